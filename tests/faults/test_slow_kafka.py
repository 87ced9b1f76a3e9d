"""The Kafka broker slow rather than dead, behind tests/support/latency_proxy (the broker advertises the proxy, so
every client connection goes through it): acks 0.5 s late (within kafka_ack_timeout_s, 3 s by default), acks
5 s late (beyond it), and a stall (no byte either way, connections open), each for 6 s in CI (twice the ack
timeout: the sink marks the broker down, spools and reconnects, the same path as a longer fault) and 10 s with
--runslow (the runs in docs/reliability.md), under steady open-loop load (100 calls/s, 2 s deadline each) through a
real `sibyl serve` with the Kafka sink.

No call fails, and once the broker is fast again every answered prediction is in the topic (the sink spools
what a broker too slow to acknowledge has not acknowledged, and replays it in order; duplicates are allowed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest, Role
from tests.faults.harness import OpenLoad, p99_ms
from tests.faults.scenario import log_tail, stop
from tests.faults.scrape import scrape, value
from tests.support.inproc import serve_subprocess
from tests.support.kafka_broker import KafkaBroker, create_topic
from tests.support.kafkaread import ids_in_topic
from tests.support.latency_proxy import LatencyProxy
from tests.support.workers import answering

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
TOPIC, FAULT_S, LONG_FAULT_S, RATE = "sibyl.predictions", 6.0, 10.0, 100.0


class ProxiedBroker(KafkaBroker):
    """tansu (memory storage) advertising `advertised_port`: clients learn that address from metadata."""

    def __init__(self, advertised_port: int) -> None:
        self.advertised_port = advertised_port
        super().__init__()

    def _command(self) -> list[str]:
        command = super()._command()
        command[command.index("--advertised-listener-url") + 1] = f"tcp://127.0.0.1:{self.advertised_port}"
        return command


@pytest.fixture
def slow_broker() -> Iterator[tuple[LatencyProxy, str]]:
    """(proxy, bootstrap through it); the broker starts once the proxy knows its own port."""
    with LatencyProxy(0) as proxy:
        broker = ProxiedBroker(proxy.port)
        proxy.target = (proxy.target[0], broker.port)
        broker.start()
        try:
            yield proxy, proxy.address
        finally:
            broker.close()


def request(i: int) -> PredictRequest:
    return PredictRequest(request_id=f"r{i}", predictor="p", rows=[FeatureRow(features={"amount": float(i % 5)})])


SLOW: dict[str, Callable[[LatencyProxy], None]] = {
    "acks +0.5 s": lambda proxy: proxy.delay(down_s=0.5),
    "acks +5 s": lambda proxy: proxy.delay(down_s=5.0),
    "stall": lambda proxy: proxy.stall(),
}


# Acks within the ack timeout only slow the sender down: behind --runslow to keep CI short.
@pytest.mark.parametrize("slow", [pytest.param(s, marks=pytest.mark.slow) if s == "acks +0.5 s" else s for s in SLOW])
async def test_a_slow_broker_fails_no_call_and_loses_no_record(
    slow: str, slow_broker: tuple[LatencyProxy, str], tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    fault_s = LONG_FAULT_S if pytestconfig.getoption("--runslow") else FAULT_S
    proxy, bootstrap = slow_broker
    await asyncio.to_thread(create_topic, bootstrap, TOPIC)
    env = {
        "SIBYL_PREDLOG__SINK": "kafka",
        "SIBYL_PREDLOG__KAFKA_BOOTSTRAP": bootstrap,
        "SIBYL_PREDLOG__TOPIC": TOPIC,
        "SIBYL_PREDLOG__SPOOL_DIR": str(tmp_path / "spool"),
        "SIBYL_METRICS__PORT": "0",
    }
    proc, port, metrics_port = serve_subprocess(tmp_path, log_to=tmp_path / "server.log", **env)
    delivered_s: float | None = None
    seen: set[str] = set()
    try:
        answering(port, 1)
        async with OpenLoad(f"127.0.0.1:{port}", request, rate=RATE, deadline_s=2.0) as load:
            load.mark("start")
            await asyncio.sleep(3.0)
            load.mark("fault")
            SLOW[slow](proxy)
            await asyncio.sleep(fault_s)
            load.mark("repair")
            proxy.reset()
            repaired = time.monotonic()
            await asyncio.sleep(3.0)
        samples = await asyncio.to_thread(scrape, metrics_port)
        answered = load.answered()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = await asyncio.to_thread(ids_in_topic, bootstrap, TOPIC, Role.ROLE_PRIMARY)
            if not answered - seen:
                delivered_s = time.monotonic() - repaired
                break
            await asyncio.sleep(1.0)
    finally:
        code = await asyncio.to_thread(stop, proc)
    during = load.between("fault", "repair")
    spooled = value(samples, "sibyl_predlog_records_total", outcome="spooled")
    print(
        f"\n[kafka {slow} {fault_s:.0f} s] calls {len(load.shots)} {dict(load.codes())}; failed during fault "
        f"{sum(s.code != 'OK' for s in during)} of {len(during)}; p99 before "
        f"{p99_ms(load.between('start', 'fault')):.1f} ms, during {p99_ms(during):.1f} ms; answered {len(answered)}, "
        f"missing from Kafka {len(answered - seen)}; spooled {spooled:.0f}; all delivered "
        f"{'not in time' if delivered_s is None else f'{delivered_s:.1f} s'} after repair"
    )
    assert code == 0, log_tail(tmp_path)
    assert load.failed() == [], f"{load.codes()}: failed per second {load.failures_per_second()}"
    assert len(during) >= 0.9 * fault_s * RATE  # the load ran through the fault (a count, not a time)
    assert proxy.counts.bytes_down > 0
    assert answered <= seen, f"{len(answered - seen)} answered predictions missing from Kafka"
