"""The peer servers as child processes on free loopback ports, each from its own venv, ready when the model is.

Both peers open their gRPC port before the model is loaded, so readiness is the V2 ModelReady RPC, not a
TCP connect.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sysconfig
from pathlib import Path

import grpc

from benchmarks.peers.v2 import MODEL_READY
from sibyl.kserve.grpc_predict_v2_pb2 import ModelReadyRequest, ModelReadyResponse
from tests.support.process import LOOPBACK, ManagedProcess, free_port

HERE = Path(__file__).resolve().parent
RUNTIME_DIR = HERE / "mlserver_runtime"
TRITON_SCRIPT = HERE / "triton_server.py"


class PeerServer(ManagedProcess):
    """A V2 server for one model; `target` is "127.0.0.1:<grpc port>" once ModelReady says true."""

    start_timeout_s = 90.0  # tritonserver + a Python model, on a busy 2-core box
    drop_env = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH")

    def __init__(self, python: Path, model: Path, name: str = "gbdt", output: str = "probabilities") -> None:
        self.python = python
        self.model = model.resolve()
        self.model_name = name
        self.output = output
        self.extra_ports = (free_port(), free_port())  # HTTP and metrics: loopback, never the 8000s defaults
        self._channel: grpc.Channel | None = None
        super().__init__()

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The root of the peer's process tree (tritonserver and its stubs are children of it)."""
        return self._proc.pid if self._proc is not None else None

    def _is_ready(self) -> bool:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target)
        try:
            raw = self._channel.unary_unary(MODEL_READY)(
                ModelReadyRequest(name=self.model_name).SerializeToString(), timeout=0.5
            )
        except grpc.RpcError:
            return False
        return ModelReadyResponse.FromString(raw).ready

    def stop(self, timeout_s: float = 10.0) -> None:
        proc = self._proc
        super().stop(timeout_s)
        if proc is not None:  # tritonserver and stub processes are children of ours: end their group too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class MLServerPeer(PeerServer):
    """MLServer 1.7.1 with our onnxruntime runtime (benchmarks/peers/mlserver_runtime) on the same model.onnx."""

    label = "mlserver"

    def __init__(self, python: Path, model: Path, name: str = "gbdt", output: str = "probabilities",
                 parallel_workers: int = 0) -> None:  # fmt: skip
        self.parallel_workers = parallel_workers
        super().__init__(python, model, name, output)

    def _command(self) -> list[str]:
        http, metrics = self.extra_ports
        settings = {
            "debug": False,
            "host": LOOPBACK,
            "grpc_port": self.port,
            "http_port": http,
            "metrics_port": metrics,
            # 0: inference on the server's own event loop (no IPC hop to a worker process); see README.
            "parallel_workers": self.parallel_workers,
            "load_models_at_startup": True,
        }
        model_settings = {
            "name": self.model_name,
            "implementation": "onnx_runtime.OnnxRuntimeModel",
            "parameters": {"uri": str(self.model), "version": "1", "extra": {"output": self.output}},
        }
        (self.dir / "settings.json").write_text(json.dumps(settings, indent=2))
        (self.dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        mlserver = self.python.parent / "mlserver"
        return ["env", f"PYTHONPATH={RUNTIME_DIR}", str(mlserver), "start", str(self.dir)]


class TritonPeer(PeerServer):
    """tritonserver 2.51 (bundled by nvidia-pytriton 0.7.0) with a PyTriton model calling onnxruntime."""

    label = "triton"

    def _command(self) -> list[str]:
        http, metrics = self.extra_ports
        # The bundled Python-backend stub links the system libpython3.11; it must load the venv
        # interpreter's own libpython, or the stdlib it imports does not match the C runtime.
        libdir = self._libdir()
        return [
            "env",
            f"LD_LIBRARY_PATH={libdir}",
            str(self.python),
            str(TRITON_SCRIPT),
            "--model", str(self.model), "--name", self.model_name, "--output", self.output,
            "--grpc-port", str(self.port), "--http-port", str(http), "--metrics-port", str(metrics),
        ]  # fmt: skip

    def _libdir(self) -> str:
        libdir = sysconfig.get_config_var("LIBDIR")  # the venv was made from this interpreter
        return str(libdir or "")
