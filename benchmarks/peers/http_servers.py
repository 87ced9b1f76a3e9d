"""The HTTP field's peer servers (and KServe's, which also answers V2 gRPC) as child processes on free loopback
ports, each from its own venv, running an app of benchmarks/peers/http_apps/ on the same model.onnx.

Each is ready when its own readiness answer says so (KServe's V2 model-ready, BentoML's /readyz, LitServe's
/health, the Ray app's "SERVING" line once serve.run has returned). Stopping ends the whole process tree: Ray's
GCS, raylet and workers, LitServe's inference workers and BentoML's service workers are children of ours, and a
SIGTERM to the top one does not always reach them.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
from pathlib import Path

from benchmarks.load.cpu import tree
from benchmarks.peers.servers import PeerServer
from tests.support.process import LOOPBACK, ManagedProcess

APPS = Path(__file__).resolve().parent / "http_apps"
QUIET = ("BENTOML_DO_NOT_TRACK=true", "RAY_USAGE_STATS_ENABLED=0")  # no usage reports from a benchmark box


def app_env(model: Path, output: str) -> list[str]:
    """`env` assignments every app reads: its dir on PYTHONPATH (ort_model), the model and the output to score."""
    return ["env", f"PYTHONPATH={APPS}", f"SIBYL_PEER_MODEL={model}", f"SIBYL_PEER_OUTPUT={output}", *QUIET]


def get_ok(port: int, path: str) -> bool:
    """One GET on 127.0.0.1:port; True when it answers 200."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=1.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def end_tree(pids: list[int]) -> None:
    """SIGKILL what is left of a process tree taken before its root was stopped (children reparented to init)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class HttpPeer(ManagedProcess):
    """One framework's HTTP server for the model; `http_port` and `pid` for the load client and the CPU reading."""

    start_timeout_s = 180.0  # Ray starts a cluster; every peer imports a web stack and onnxruntime on a busy box
    drop_env = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH")

    def __init__(self, python: Path, model: Path, output: str = "probabilities") -> None:
        self.python = python
        self.model = model.resolve()
        self.output = output
        super().__init__()

    @property
    def http_port(self) -> int:
        return self.port

    @property
    def pid(self) -> int | None:  # type: ignore[override]
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout_s: float = 15.0) -> None:
        pids = tree(self._proc.pid) if self._proc is not None else []
        super().stop(timeout_s)
        end_tree(pids)


class BentoMLPeer(HttpPeer):
    """BentoML 1.4.40: `bentoml serve bentoml_app:Gbdt` (service defaults: one worker)."""

    label = "bentoml"

    def _command(self) -> list[str]:
        bentoml = self.python.parent / "bentoml"
        serve = ["serve", "bentoml_app:Gbdt", "--working-dir", str(APPS), "--host", LOOPBACK, "--port", str(self.port)]
        return [*app_env(self.model, self.output), str(bentoml), *serve]

    def _is_ready(self) -> bool:
        return get_ok(self.port, "/readyz")


class LitServePeer(HttpPeer):
    """LitServe 0.2.19: LitServer defaults (accelerator cpu, one inference worker, one API server)."""

    label = "litserve"

    def _command(self) -> list[str]:
        return [*app_env(self.model, self.output), str(self.python), str(APPS / "litserve_app.py"), "--port", str(self.port)]  # fmt: skip

    def _is_ready(self) -> bool:
        return get_ok(self.port, "/health")


class RayServePeer(HttpPeer):
    """Ray Serve 2.60.0: a local Ray (num_cpus=2, no dashboard, 127.0.0.1), one replica, the proxy on our port."""

    label = "rayserve"

    def _command(self) -> list[str]:
        return [*app_env(self.model, self.output), str(self.python), str(APPS / "rayserve_app.py"), "--port", str(self.port)]  # fmt: skip

    def _is_ready(self) -> bool:
        try:
            return "SERVING" in self.log_path.read_text(errors="replace")
        except OSError:
            return False


class KServePeer(PeerServer):
    """KServe 0.21.0's Python ModelServer (defaults: one worker): V2 gRPC on `port` (`target`), V2 REST on
    `http_port`; ready when V2 ModelReady says so."""

    label = "kserve"

    @property
    def http_port(self) -> int:
        return self.extra_ports[0]

    def _command(self) -> list[str]:
        return [
            *app_env(self.model, self.output),
            str(self.python),
            str(APPS / "kserve_app.py"),
            "--name", self.model_name, "--http-port", str(self.http_port), "--grpc-port", str(self.port),
        ]  # fmt: skip

    def stop(self, timeout_s: float = 10.0) -> None:
        pids = tree(self._proc.pid) if self._proc is not None else []
        super().stop(timeout_s)
        end_tree(pids)
