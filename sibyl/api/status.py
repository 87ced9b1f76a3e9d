"""The one place exceptions become gRPC status codes and messages."""

from __future__ import annotations

import logging

import grpc

from sibyl.errors import SibylError

log = logging.getLogger(__name__)


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, SibylError):
        return exc.code, str(exc)
    # Anything else is our bug: log it with its traceback, tell the caller without internals.
    log.error("internal error while serving a call", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); the server log has details"
