"""The stock tritonclient.http calls every KServe V2 REST endpoint once: liveness, readiness (of the server, the
model and a missing version), server and model metadata, the repository index, the model config, four inferences
(binary data, JSON, version 1, the shadow model s@1) with the given rows, the statistics, and the metadata of a
model that does not exist. Prints the answers as JSON.

    python triton_http_tour.py HOST:PORT AMOUNTS_JSON CONSUMER_IDS_JSON

Run it in a subprocess, as triton_grpc_tour.py is: its gevent client and numpy helpers stay out of the tests.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.http as th
from tritonclient.utils import InferenceServerException


def infer(
    client: th.InferenceServerClient, amounts: list[float], consumers: list[str], version: str = "", binary: bool = True
) -> Any:
    amount = th.InferInput("amount", [len(amounts), 1], "FP32")
    amount.set_data_from_numpy(np.array(amounts, np.float32).reshape(-1, 1), binary_data=binary)
    ids = th.InferInput("consumer_id", [len(consumers)], "BYTES")
    ids.set_data_from_numpy(np.array([c.encode() for c in consumers], dtype=object), binary_data=binary)
    outputs = [th.InferRequestedOutput("score", binary_data=binary)]
    result = client.infer(
        "p",
        [amount, ids],
        model_version=version,
        request_id="rest-" + version,
        parameters={"store_id": "s1"},
        outputs=outputs,
    )
    return {"scores": result.as_numpy("score").ravel().tolist(), "response": result.get_response()}


def main(target: str, amounts: list[float], consumers: list[str]) -> dict[str, Any]:
    client = th.InferenceServerClient(target)
    out: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "server": client.get_server_metadata(),
        "index": client.get_model_repository_index(),
        "model_ready": client.is_model_ready("p"),
        "version_ready": client.is_model_ready("p", "9"),
        "metadata": client.get_model_metadata("p"),
        "config": client.get_model_config("p"),
    }
    out["binary"] = infer(client, amounts, consumers)
    out["json"] = infer(client, amounts, consumers, binary=False)
    out["version"] = infer(client, amounts, consumers, "1")
    out["other_model"] = infer(client, amounts, consumers, "s@1")
    out["stats"] = client.get_inference_statistics("p")
    try:
        client.get_model_metadata("nope")
    except InferenceServerException as exc:
        out["missing"] = [exc.status(), exc.message()]
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]))))
