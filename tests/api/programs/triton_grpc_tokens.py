"""The stock tritonclient.grpc against a server that wants a bearer token: infer, model metadata and liveness with
no token, a wrong one and the given one. Prints {"<call> <who>": "OK" or the gRPC status} as JSON.

    python triton_grpc_tokens.py HOST:PORT "Bearer TOKEN"

Run it in a subprocess: tritonclient registers its own `inference.*` protobuf types, which clash with sibyl's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException


def main(target: str, authorization: str) -> dict[str, str]:
    client = tc.InferenceServerClient(target)
    amount = tc.InferInput("amount", [1], "FP32")
    amount.set_data_from_numpy(np.ones(1, np.float32))
    calls: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        "infer": (client.infer, ("p", [amount])),
        "metadata": (client.get_model_metadata, ("p",)),
        "live": (client.is_server_live, ()),
    }
    headers = {"none": None, "wrong": {"authorization": "Bearer nope"}, "token": {"authorization": authorization}}
    out = {}
    for who, header in headers.items():
        for call, (method, args) in calls.items():
            try:
                method(*args, headers=header)
                out[f"{call} {who}"] = "OK"
            except InferenceServerException as exc:
                out[f"{call} {who}"] = exc.status()
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
