"""How a backend service should call sibyl from Python: with sibyl.client.

    python examples/client.py                                  # localhost:50051, predictor "example"
    python examples/client.py --target sibyl.ml.svc.cluster.local:50051 --deadline-ms 50

What matters, and why (sibyl.client does each of these; see docs/protocols.md):
- One long-lived client per process, shared by all threads (AsyncClient: by all tasks): channels are
  expensive to create.
- `host:port` is resolved by DNS and calls go round-robin over every address: with a headless Kubernetes
  Service, DNS returns every pod (a ClusterIP would pin the HTTP/2 connection to one pod).
- Client-side health checking: a pod that starts draining says NOT_SERVING and gets no more calls.
- Keepalive pings find dead connections (node gone, NAT timeout) before a call has to.
- Retries of UNAVAILABLE (a pod draining or restarting) and RESOURCE_EXHAUSTED (a busy pod) only, on the next
  address, with jittered backoff and a retry budget that a rolling restart does not exhaust but a sick fleet
  does, so it is not hit with a retry storm. Predict has no side effects, so a retried call is safe; other
  codes (INVALID_ARGUMENT, NOT_FOUND, ...) are the caller's to fix.
- A deadline on every call: a late prediction is worth nothing, and the server stops work on expiry.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from google.protobuf import json_format

from sibyl.client import Client

# Two rows sharing a consumer (context); store-level features come from the feature store by store_id.
ROWS = [
    {"distance_km": 1.8, "hour_of_day": 19.0, "is_weekend": 0.0, "promo_pct": 10.0, "store_id": "3"},
    {"distance_km": 6.5, "hour_of_day": 19.0, "is_weekend": 0.0, "promo_pct": 0.0, "store_id": "42"},
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send one Predict call the way a backend service should.")
    parser.add_argument("--target", default="localhost:50051", help="HOST:PORT or gRPC target (default %(default)s)")
    parser.add_argument("--predictor", default="example", help="predictor name (default %(default)s)")
    parser.add_argument("--deadline-ms", type=float, default=200.0, help="per-call deadline (default %(default)s)")
    args = parser.parse_args(argv)
    if args.deadline_ms <= 0:
        parser.error("--deadline-ms must be positive")

    with Client(args.target, timeout_s=args.deadline_ms / 1000) as client:
        try:
            prediction = client.predict(
                args.predictor, ROWS, context={"consumer_id": "7"}, request_id="client-example-1"
            )
        except grpc.RpcError as exc:
            print(f"Predict failed: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
    print(f"{prediction.model}: scores {prediction.scores[:, 0].round(4).tolist()}", file=sys.stderr)
    print(json_format.MessageToJson(prediction.response, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
