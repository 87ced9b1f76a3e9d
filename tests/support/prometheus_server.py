"""A real Prometheus server (Debian `prometheus` package) with a given config, on loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.support.process import LOOPBACK, ManagedProcess, find_binary

HINT = "apt-get install -y prometheus (as root; includes promtool)"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def prometheus_path() -> str:
    return find_binary("prometheus", HINT)


def promtool_path() -> str:
    return find_binary("promtool", HINT)


class PrometheusServer(ManagedProcess):
    """`with PrometheusServer(config_text) as prom: prom.query("up")`. Relative paths in the config (e.g.
    `rule_files`) resolve against `.dir`; write the files there or use absolute paths."""

    label = "prometheus"
    start_timeout_s = 30.0

    def __init__(self, config_text: str, port: int | None = None) -> None:
        self._binary = prometheus_path()
        super().__init__(port)
        self.config_path = self.dir / "prometheus.yml"
        self.config_path.write_text(config_text)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _command(self) -> list[str]:
        return [
            self._binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--web.enable-lifecycle",
        ]

    def _is_ready(self) -> bool:
        try:
            with _OPENER.open(f"{self.url}/-/ready", timeout=1) as response:
                return int(response.status) == 200
        except OSError:
            return False

    def query(self, promql: str) -> dict[str, Any]:
        """Instant query; returns the API's `data` object ({"resultType": ..., "result": [...]})."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with _OPENER.open(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
            raise ValueError(f"PromQL {promql!r} rejected: {body.get('error', exc.reason)}") from None
        return dict(body["data"])

    def reload(self, config_text: str | None = None) -> None:
        """Rewrite the config (if given) and ask the running server to reload it."""
        if config_text is not None:
            self.config_path.write_text(config_text)
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with _OPENER.open(request, timeout=10) as response:
            response.read()
