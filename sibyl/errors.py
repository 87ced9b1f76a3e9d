"""The error hierarchy: each error knows the gRPC status code it maps to (mapped in one place, api/)."""

from __future__ import annotations

import grpc


class SibylError(Exception):
    """Base of every error a caller or operator should see; the message says what to fix."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(SibylError, ValueError):
    """Also a ValueError, so validators (pydantic) can raise it and callers can catch either."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(SibylError):
    code = grpc.StatusCode.NOT_FOUND


class ResourceExhausted(SibylError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(SibylError):
    code = grpc.StatusCode.UNAVAILABLE


class FailedPrecondition(SibylError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ConfigError(SibylError):
    """A setting is wrong; raised at start-up, shown as one line by the CLI."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ModelStoreError(SibylError):
    """The model store is unreachable or holds something unusable."""

    code = grpc.StatusCode.UNAVAILABLE


class ModelLoadError(SibylError):
    """A model version failed verification (sha256, input schema) or warm-up; it is never served."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class MissingDependency(SibylError):
    """An optional extra is needed for the configured backend (e.g. boto3 for s3://)."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs the '{package}' package: pip install 'sibyl[{extra}]'")


class DeadlineExceeded(SibylError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
