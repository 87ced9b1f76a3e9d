"""The one place exceptions become gRPC status codes and messages (and unparsable request bytes an error)."""

from __future__ import annotations

import logging
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from sibyl.errors import InvalidArgument, SibylError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)


def parse(message_type: type[M], data: bytes) -> M:
    """Servicers parse request bytes themselves: grpc answers UNKNOWN when its own deserializer fails, and a
    malformed message is the caller's INVALID_ARGUMENT."""
    try:
        return message_type.FromString(data)
    except DecodeError as exc:
        raise InvalidArgument(
            f"message is not a valid {message_type.DESCRIPTOR.full_name} ({exc}); check the client's proto"
        ) from None


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, SibylError):
        return exc.code, str(exc)
    # Anything else is our bug: log it with its traceback, tell the caller without internals.
    log.error("internal error while serving a call", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); the server log has details"
