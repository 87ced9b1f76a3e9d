"""The one place exceptions become gRPC status codes and messages, and HTTP statuses for the V2 REST port."""

from __future__ import annotations

import logging
import os

import grpc

from sibyl.errors import ResourceExhausted, SibylError

log = logging.getLogger(__name__)
# Trailing metadata on every gRPC answer, errors included: which process answered (useful behind SO_REUSEPORT).
WORKER_METADATA = (("sibyl-worker", str(os.getpid())),)

# gRPC code -> HTTP status for the V2 REST port (the usual mapping, as in google.rpc.Code's comments).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class PayloadTooLarge(ResourceExhausted):
    """A request body over server.max_message_bytes: RESOURCE_EXHAUSTED like gRPC's, but HTTP 413, not 429
    (retrying the same body cannot help)."""

    http_status = 413


def code_of(exc: BaseException) -> grpc.StatusCode:
    """The status code an error answers (INTERNAL for anything that is not a SibylError), without logging it."""
    return exc.code if isinstance(exc, SibylError) else grpc.StatusCode.INTERNAL


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """(code, message) a call refused with exc answers; an error that is not a SibylError is logged here."""
    if isinstance(exc, SibylError):
        return exc.code, str(exc)
    # Anything else is our bug: log it with its traceback, tell the caller without internals.
    log.error("internal error while serving a call", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); the server log has details"


def to_http(exc: BaseException) -> tuple[int, grpc.StatusCode, str]:
    """(HTTP status, the gRPC code it stands for, message) for the REST port's {"error": message} body."""
    code, message = to_status(exc)
    return getattr(exc, "http_status", None) or HTTP_STATUS.get(code, 500), code, message
