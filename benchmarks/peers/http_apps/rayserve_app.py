"""Ray Serve 2.60 app: POST /predict {"rows": [[16 floats], ...]} -> {"scores": [...]}, one replica (the
deployment defaults). Ray on this box only: ray.init(num_cpus=2, include_dashboard=False) on 127.0.0.1, the
Serve proxy on 127.0.0.1:P. Runs by path inside the rayserve venv: `python rayserve_app.py --port P`; prints
"SERVING" once the app answers, and shuts Serve and Ray down on SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

import ray
from ort_model import OrtModel
from ray import serve
from starlette.requests import Request


@serve.deployment
class Gbdt:
    def __init__(self) -> None:
        self.model = OrtModel()

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        return {"scores": self.model.scores(body["rows"])}


def stop(*_: object) -> None:
    serve.shutdown()
    ray.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(Gbdt.bind(), name="gbdt", route_prefix="/predict")
    signal.signal(signal.SIGTERM, stop)
    print("SERVING", flush=True)
    while True:
        time.sleep(3600)
