"""The stock tritonclient.grpc calls every KServe V2 endpoint on sibyl's port once: liveness, readiness, server and
model metadata, the model repository index, the model config, three inferences (the primary, version 1, the
shadow model s@1) with the given rows, and the metadata of a model that does not exist. Prints the answers as JSON.

    python triton_grpc_tour.py HOST:PORT AMOUNTS_JSON CONSUMER_IDS_JSON

Run it in a subprocess: tritonclient registers its own `inference.*` protobuf types, which clash with sibyl's.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException


def infer(client: tc.InferenceServerClient, amounts: list[float], consumers: list[str], version: str = "") -> Any:
    amount = tc.InferInput("amount", [len(amounts), 1], "FP32")
    amount.set_data_from_numpy(np.array(amounts, np.float32).reshape(-1, 1))
    ids = tc.InferInput("consumer_id", [len(consumers)], "BYTES")
    ids.set_data_from_numpy(np.array([c.encode() for c in consumers], dtype=object))
    result = client.infer(
        "p", [amount, ids], model_version=version, request_id="v2-" + version, parameters={"store_id": "s1"}
    )
    return {"scores": result.as_numpy("score").ravel().tolist(), "response": result.get_response(as_json=True)}


def main(target: str, amounts: list[float], consumers: list[str]) -> dict[str, Any]:
    client = tc.InferenceServerClient(target)
    out: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "server": client.get_server_metadata(as_json=True),
        "index": client.get_model_repository_index(as_json=True),
        "model_ready": client.is_model_ready("p"),
        "metadata": client.get_model_metadata("p", as_json=True),
        "config": client.get_model_config("p", as_json=True),
    }
    out["infer"] = infer(client, amounts, consumers)
    out["infer_version"] = infer(client, amounts, consumers, "1")
    out["infer_other_model"] = infer(client, amounts, consumers, "s@1")
    try:
        client.get_model_metadata("nope")
    except InferenceServerException as exc:
        out["missing"] = exc.status()
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]))))
