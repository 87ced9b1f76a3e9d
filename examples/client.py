"""How a backend service should call sibyl from Python.

    python examples/client.py                                  # dns:///localhost:50051, predictor "example"
    python examples/client.py --target dns:///sibyl.ml.svc.cluster.local:50051 --deadline-ms 50

What matters, and why:
- One long-lived channel per process, shared by all threads: channels are expensive to create.
- `dns:///` target + `round_robin`: with a headless Kubernetes Service, DNS returns every pod and the
  channel spreads calls over all of them (a ClusterIP would pin the HTTP/2 connection to one pod).
- Keepalive pings find dead connections (node gone, NAT timeout) before a call has to.
- Retries of UNAVAILABLE only (a pod draining or restarting), with jittered backoff and a retry budget
  (retryThrottling) so a sick fleet is not hit with a retry storm. Predict has no side effects, so a
  retried call is safe; other codes (INVALID_ARGUMENT, NOT_FOUND, ...) are the caller's to fix.
- A deadline on every call: a late prediction is worth nothing, and the server stops work on expiry.
"""

from __future__ import annotations

import argparse
import json
import sys

import grpc
from google.protobuf import json_format

from sibyl.v1 import predict_pb2, predict_pb2_grpc

SERVICE = "sibyl.v1.PredictionService"

SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": SERVICE}],
            "waitForReady": False,  # fail fast when no pod is reachable instead of queueing until the deadline
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.01s",
                "maxBackoff": "0.1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
    # Retries stop when more than half the tokens are spent; each failure costs 1, each success earns 0.1.
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
}

CHANNEL_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 20_000),  # the server accepts pings every 10 s or slower
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.dns_min_time_between_resolutions_ms", 5_000),  # pick up new pods soon after a scale-up
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def make_channel(target: str) -> grpc.Channel:
    """One per process; close it on shutdown."""
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def example_request(predictor: str) -> predict_pb2.PredictRequest:
    """Two rows sharing a consumer; store-level features come from Redis by store_id."""
    request = predict_pb2.PredictRequest(request_id="client-example-1", predictor=predictor)
    request.context["consumer_id"] = "7"
    for store_id, distance_km, promo_pct in (("3", 1.8, 10.0), ("42", 6.5, 0.0)):
        row = request.rows.add()
        row.features.update(
            {"distance_km": distance_km, "hour_of_day": 19.0, "is_weekend": 0.0, "promo_pct": promo_pct}
        )
        row.entities["store_id"] = store_id
    return request


def predict(
    stub: predict_pb2_grpc.PredictionServiceStub, request: predict_pb2.PredictRequest, deadline_s: float
) -> predict_pb2.PredictResponse:
    response: predict_pb2.PredictResponse = stub.Predict(request, timeout=deadline_s)
    return response


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send one Predict call the way a backend service should.")
    parser.add_argument("--target", default="dns:///localhost:50051", help="gRPC target (default %(default)s)")
    parser.add_argument("--predictor", default="example", help="predictor name (default %(default)s)")
    parser.add_argument("--deadline-ms", type=float, default=200.0, help="per-call deadline (default %(default)s)")
    args = parser.parse_args(argv)
    if args.deadline_ms <= 0:
        parser.error("--deadline-ms must be positive")

    with make_channel(args.target) as channel:
        stub = predict_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = predict(stub, example_request(args.predictor), args.deadline_ms / 1000)
        except grpc.RpcError as exc:
            print(f"Predict failed: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
    print(json_format.MessageToJson(response, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
