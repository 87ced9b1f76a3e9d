"""Container health probe: `python -m sibyl.process.healthcheck [--service NAME] [--port P] [--timeout S]`.

Asks the local server's gRPC health service (grpc.health.v1 Check); exits 0 when SERVING, 1 otherwise, and
prints one line either way. The port defaults to $SIBYL_SERVER__PORT, else 50051.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_PORT = 50051


def _default_port() -> int:
    raw = os.environ.get("SIBYL_SERVER__PORT", "")
    try:
        port = int(raw) if raw else DEFAULT_PORT
    except ValueError:
        return DEFAULT_PORT
    return port if 0 < port < 65536 else DEFAULT_PORT


def check(port: int, service: str = "", timeout_s: float = 2.0, host: str = "127.0.0.1") -> tuple[bool, str]:
    """(serving?, one-line message) for `service` ("" = the whole server)."""
    target = f"{host}:{port}"
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            # types-grpcio-health-checking declares HealthStub without its methods (the generated code has Check).
            reply = stub.Check(request, timeout=timeout_s)  # type: ignore[attr-defined]
        except grpc.RpcError as exc:
            return False, f"{target}: {exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{target} {service or '(server)'}: {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sibyl.process.healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=_default_port())
    parser.add_argument("--service", default="", help='health service name ("" = whole server)')
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    args = parser.parse_args(argv)
    ok, message = check(args.port, args.service, args.timeout)
    print(("ok: " if ok else "unhealthy: ") + message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
