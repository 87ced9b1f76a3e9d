"""How a client channel to sibyl is set up: target, round-robin, health checking, keepalive, retries, TLS and the
bearer token.

- `host:port` becomes `dns:///host:port`; with `round_robin`, every address DNS returns (e.g. each pod of a
  headless Kubernetes Service) gets calls, and re-resolution picks up new pods.
- Client-side health checking (service config healthCheckConfig): the channel watches each address's gRPC health
  service for PredictionService, and an address that says NOT_SERVING (a server that started draining) gets no
  more calls while its in-flight ones finish; a server without the health service is taken as healthy.
- Keepalive pings find a dead connection (node gone, NAT timeout) before a call does; the server accepts a
  ping every 10 s or slower, so the interval stays above that.
- Retries are gRPC's own (service config retryPolicy): UNAVAILABLE (a draining or restarting server, a
  connection that failed or ended) and RESOURCE_EXHAUSTED (over max_in_flight) with exponential backoff, each
  attempt picked afresh by round_robin (so on another address), all within the call's deadline. Predict has no
  side effects, so a retried call is safe; other codes (INVALID_ARGUMENT, NOT_FOUND, ...) are the caller's to
  fix.
- The retry budget (retryThrottling, RETRY_BUDGET): every attempt that fails with a retryable code spends a token,
  every success earns RETRY_BUDGET["tokenRatio"] back, and retries stop while half the tokens or fewer are left.
  With a ratio of 1, retries go on as long as no more than half of the attempts fail: a deploy, where one
  replica of two or more refuses calls while it drains, stays below that. Beyond it the fleet is failing,
  not draining: after 50 failures more than successes, each call gets one attempt until successes earn the
  tokens back, so a failing fleet never sees more attempts than calls, and a healthy one at most two per
  call on average (docs/deploy.md#calling-sibyl-from-a-backend-service).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from sibyl.errors import InvalidArgument

SERVICE = "sibyl.v1.PredictionService"
OUTCOMES = "sibyl.v1.OutcomeService"
RETRYABLE = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")
MAX_ATTEMPTS = 5  # gRPC caps retryPolicy.maxAttempts at 5
RETRY_BUDGET = {"maxTokens": 100, "tokenRatio": 1.0}  # why these: the module docstring
SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


@dataclass(frozen=True)
class Tls:
    """TLS to the server. ca_file: PEM bundle that signed the server's certificate (None: the system's roots);
    cert_file + key_file: a client certificate, for a server that wants mutual TLS."""

    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    server_name: str | None = None  # the name the server's certificate is checked against, if not the target's

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert_file is None) != (self.key_file is None):
            raise InvalidArgument("TLS client certificate: give cert_file and key_file together (mutual TLS)")
        return grpc.ssl_channel_credentials(_read(self.ca_file), _read(self.key_file), _read(self.cert_file))


def _read(path: str | Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None


def normalize_target(target: str) -> str:
    """`host:port` -> `dns:///host:port` (so round_robin sees every address); explicit schemes stay."""
    if not target or target.startswith(SCHEMES) or "://" in target:
        if not target:
            raise InvalidArgument("empty target: give HOST:PORT of a sibyl server, e.g. 127.0.0.1:50051")
        return target
    return f"dns:///{target}"


def service_config(retries: int, backoff_s: float = 0.01, max_backoff_s: float = 0.2) -> dict[str, Any]:
    """Round-robin over the addresses whose health service says SERVING; Predict retried `retries` times (0:
    never) on RETRYABLE codes with jittered exponential backoff, within RETRY_BUDGET. PredictStream is not
    retried (a stream cannot be replayed once it has answered). OutcomeService.Report is retried as Predict: a
    refused Report kept nothing; one whose answer was lost on the way may be kept twice (the evaluator counts
    a duplicate outcome once: docs/monitoring.md)."""
    calls = [{"service": SERVICE, "method": "Predict"}, {"service": OUTCOMES, "method": "Report"}]
    method: dict[str, Any] = {"name": calls, "waitForReady": False}
    if retries > 0:
        method["retryPolicy"] = {
            "maxAttempts": min(retries + 1, MAX_ATTEMPTS),
            "initialBackoff": f"{backoff_s}s",
            "maxBackoff": f"{max_backoff_s}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": list(RETRYABLE),
        }
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": SERVICE},
        "methodConfig": [method],
        "retryThrottling": dict(RETRY_BUDGET),
    }


def channel_options(
    retries: int, keepalive_s: float, max_message_bytes: int, server_name: str | None = None
) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(service_config(retries))),
        ("grpc.enable_retries", 1 if retries > 0 else 0),
        ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.dns_min_time_between_resolutions_ms", 5_000),  # pick up new pods soon after a scale-up
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


def check(timeout_s: float | None, retries: int, keepalive_s: float) -> None:
    if timeout_s is not None and timeout_s <= 0:
        raise InvalidArgument(f"timeout_s must be positive (or None for no deadline), got {timeout_s}")
    if retries < 0:
        raise InvalidArgument(f"retries must be 0 or more, got {retries}")
    if keepalive_s < 10:
        raise InvalidArgument(f"keepalive_s {keepalive_s} is below the server's 10 s ping floor; use 10 or more")


def metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    return (("authorization", f"Bearer {token}"),) if token else None
