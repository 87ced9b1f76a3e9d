"""The stock tritonclient.grpc sends the reported hostile V2 requests: tensor shapes that are huge, zero, overflow
int64, negative or three-dimensional, and one input named 2,000 times; then asks whether the server still lives.
Prints {"<case>": "OK" or the gRPC status, "live": bool} as JSON.

    python triton_grpc_hostile_shapes.py HOST:PORT

Run it in a subprocess: tritonclient registers its own `inference.*` protobuf types, which clash with sibyl's.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

SHAPES = {"huge": [2**32, 2**32], "zero": [0, 10**6], "overflow": [2**62, 4], "negative": [-1, 3], "dims": [1, 1, 1]}
DUPLICATES = 2000


def infer_status(client: tc.InferenceServerClient, inputs: list[tc.InferInput]) -> str | None:
    try:
        client.infer("p", inputs, client_timeout=10)
    except InferenceServerException as exc:
        return exc.status()
    return "OK"


def main(target: str) -> dict[str, Any]:
    client = tc.InferenceServerClient(target)
    out: dict[str, Any] = {
        name: infer_status(client, [tc.InferInput("x", shape, "FP32")]) for name, shape in SHAPES.items()
    }
    duplicates = []
    for _ in range(DUPLICATES):
        amount = tc.InferInput("amount", [1], "FP32")
        amount.set_data_from_numpy(np.ones(1, np.float32))
        duplicates.append(amount)
    out["duplicates"] = infer_status(client, duplicates)
    out["live"] = client.is_server_live()
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
