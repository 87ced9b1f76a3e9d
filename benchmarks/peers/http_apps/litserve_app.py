"""LitServe 0.2 server: POST /predict {"rows": [[16 floats], ...]} -> {"scores": [...]}, LitServer defaults (one
inference worker process on the CPU, one API server). Runs by path inside the litserve venv:
`python litserve_app.py --port P`.

decode_request and encode_response carry no annotations, as in LitServe's examples: LitServe reads them to build
the FastAPI route (none: the request's JSON body in, JSON out), and a `from __future__ import annotations` string
would turn the body into a query parameter."""

import argparse

import litserve as ls
from ort_model import OrtModel


class GbdtAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = OrtModel()

    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request["rows"]

    def predict(self, rows: list[list[float]]) -> list[float]:
        return self.model.scores(rows)

    def encode_response(self, output):  # type: ignore[no-untyped-def]
        return {"scores": output}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ls.LitServer(GbdtAPI(), accelerator="cpu")
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False)
