"""`sibyl monitor`: the evaluator (sibyl.monitor) as a long-running process on the same settings as `sibyl serve`:
the file log and the outcomes file beside it, or both Kafka topics as a consumer group; the same model store for
the predictors' slices; quality metrics on its own /metrics port (monitor.metrics_port, default 9101)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sibyl.errors import InvalidArgument

if TYPE_CHECKING:
    from sibyl.config import Settings
    from sibyl.monitor.evaluator import Evaluator
    from sibyl.monitor.sources import FileSources, KafkaSources

log = logging.getLogger(__name__)


def build(settings: Settings) -> Evaluator:
    from sibyl.models.catalog import Catalog
    from sibyl.models.store import open_store
    from sibyl.monitor.evaluator import Evaluator, Slicers, file_sources, kafka_sources

    ms, m, p = settings.model_store, settings.monitor, settings.predlog
    catalog = Catalog(open_store(ms.url, ms.s3_endpoint_url, ms.s3_region))
    sources: Callable[[Evaluator], FileSources | KafkaSources]
    if p.sink == "file":
        sources = file_sources(Path(p.path), p.outcomes_file())
    elif p.sink == "kafka":
        options = {"session_timeout_ms": m.session_timeout_ms, "heartbeat_interval_ms": m.session_timeout_ms // 10}
        sources = kafka_sources(p.kafka_bootstrap, p.topic, p.outcomes_topic, m.group, **options)
    else:
        raise InvalidArgument("predlog.sink is none: there is no prediction log to join outcomes to")
    return Evaluator(Path(m.state_dir), m.window_s, m.max_state_bytes, Slicers(catalog, ms.poll_interval_s), sources)


def cmd_monitor(args: argparse.Namespace, _: Settings) -> int:
    from prometheus_client import CollectorRegistry, start_http_server

    from sibyl.cli.flags import flag_overrides
    from sibyl.config import load_settings
    from sibyl.monitor.export import MonitorCollector
    from sibyl.observability.logs import setup_logging

    settings = load_settings(getattr(args, "config", None), **flag_overrides(args))
    setup_logging(settings.log_level, settings.log_json)
    evaluator = build(settings)
    registry = CollectorRegistry()
    registry.register(MonitorCollector(Path(settings.monitor.state_dir)))
    server, _thread = start_http_server(settings.monitor.metrics_port, settings.monitor.metrics_host, registry)
    print(f"sibyl monitor: state in {settings.monitor.state_dir}, metrics on "
          f"{settings.monitor.metrics_host}:{server.server_port}", flush=True)  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        evaluator.run(stop)
    finally:
        evaluator.close()
        server.shutdown()
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from sibyl.cli.flags import add_settings_flags

    p = sub.add_parser(
        "monitor",
        help="join outcomes to every model's predictions and export quality per slice",
        description="The evaluator: reads the prediction log and the outcomes (files, or Kafka as a consumer "
        "group), joins them within monitor.window_s, keeps quality statistics per model and slice in "
        "monitor.state_dir, and serves them on /metrics (docs/monitoring.md).",
    )
    p.set_defaults(handler=cmd_monitor)
    add_settings_flags(p)
