"""sibyl.client.Client (blocking) and AsyncClient (asyncio): one long-lived channel each, shared by every call.

    from sibyl.client import Client

    with Client("sibyl.ml.svc:50051", timeout_s=0.2, token="...") as client:
        prediction = client.predict("example", frame, context={"consumer_id": "7"})
        prediction.scores            # np.ndarray [N, 1], float32
        prediction.to_pandas()       # DataFrame with a "score" column
        client.report_outcomes(prediction_ids=[prediction.prediction_id], values=[1.0])  # later: what happened

Errors are grpc.RpcError (code() and details()), raised after the channel's retries (channel.py) are spent.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Unpack

import grpc

from sibyl.client import channel as ch
from sibyl.client.frames import Prediction, RequestOptions, Rows, build_request, to_prediction
from sibyl.client.outcomes import OutcomeColumns, requests
from sibyl.v1.outcome_pb2 import ReportOutcomesRequest, ReportOutcomesResponse
from sibyl.v1.outcome_pb2_grpc import OutcomeServiceStub
from sibyl.v1.predict_pb2 import PredictRequest, PredictResponse, PredictStreamResponse
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub

DEFAULT_TIMEOUT_S = 1.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class _Base:
    """The constructor Client and AsyncClient share; each opens its own kind of channel (_open)."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        token: str | None = None,
        tls: ch.Tls | None = None,
        retries: int = 3,
        keepalive_s: float = 20.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        ch.check(timeout_s, retries, keepalive_s)
        self.target = ch.normalize_target(target)
        self.timeout_s = timeout_s
        self._metadata = ch.metadata(token)
        self._credentials = tls.credentials() if tls is not None else None
        server_name = tls.server_name if tls is not None else None
        self._options = [*ch.channel_options(retries, keepalive_s, max_message_bytes, server_name), *options]
        self.channel = self._open()
        self._stub = PredictionServiceStub(self.channel)
        self._outcomes = OutcomeServiceStub(self.channel)

    def _open(self) -> Any:
        raise NotImplementedError

    def _timeout(self, timeout_s: float | None) -> float | None:
        return self.timeout_s if timeout_s is None else timeout_s


class Client(_Base):
    """Blocking client; thread-safe (share one per process).

    target: "host:port" (resolved by DNS, calls spread round-robin over its addresses) or any gRPC target;
    timeout_s: default deadline per call (None: none); token: bearer token; tls: TLS settings (None: plaintext);
    retries: times an UNAVAILABLE / RESOURCE_EXHAUSTED Predict is retried, with backoff (0: never);
    keepalive_s: ping interval on idle connections; options: extra gRPC channel options.
    """

    def _open(self) -> grpc.Channel:
        if self._credentials is None:
            return grpc.insecure_channel(self.target, options=self._options)
        return grpc.secure_channel(self.target, self._credentials, options=self._options)

    def predict(
        self,
        predictor: str,
        rows: Rows,
        *,
        timeout_s: float | None = None,
        **options: Unpack[RequestOptions],
    ) -> Prediction:
        """Score rows (DataFrame, 2-D array + feature_names, column mapping or row dicts); the keyword arguments
        but timeout_s are build_request's (frames.RequestOptions)."""
        request = build_request(predictor, rows, **options)
        return to_prediction(self.predict_request(request, timeout_s))

    def predict_request(self, request: PredictRequest, timeout_s: float | None = None) -> PredictResponse:
        """One Predict with a ready-made request."""
        response: PredictResponse = self._stub.Predict(
            request, timeout=self._timeout(timeout_s), metadata=self._metadata
        )
        return response

    def stream(
        self, requests: Iterable[PredictRequest], timeout_s: float | None = None
    ) -> Iterator[PredictStreamResponse]:
        """PredictStream: answers in order of completion, matched by request_id; an error answers its own
        request (`error` set) and the stream goes on. timeout_s bounds the whole stream (default: none)."""
        yield from self._stub.PredictStream(iter(requests), timeout=timeout_s, metadata=self._metadata)

    def report_outcomes(
        self,
        outcomes: Iterable[Mapping[str, Any]] | None = None,
        *,
        timeout_s: float | None = None,
        **columns: Unpack[OutcomeColumns],
    ) -> int:
        """Report what happened after predictions (OutcomeService.Report): row dicts (prediction_id, row, value,
        observed_at, weight) or columns (prediction_ids, values, rows, observed_at, weights); sent in calls of at
        most per_call, each all or nothing (client/outcomes.py). Returns how many the server accepted; a refused
        call raises grpc.RpcError (the calls before it stand)."""
        return sum(self.report_request(r, timeout_s).accepted for r in requests(outcomes, columns))

    def report_request(self, request: ReportOutcomesRequest, timeout_s: float | None = None) -> ReportOutcomesResponse:
        """One Report with a ready-made request."""
        response: ReportOutcomesResponse = self._outcomes.Report(
            request, timeout=self._timeout(timeout_s), metadata=self._metadata
        )
        return response

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """The same calls for asyncio (grpc.aio); create it inside the running loop and share it across tasks.
    Arguments as Client's."""

    def _open(self) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(self.target, options=self._options)
        return grpc.aio.secure_channel(self.target, self._credentials, options=self._options)

    async def predict(
        self,
        predictor: str,
        rows: Rows,
        *,
        timeout_s: float | None = None,
        **options: Unpack[RequestOptions],
    ) -> Prediction:
        request = build_request(predictor, rows, **options)
        return to_prediction(await self.predict_request(request, timeout_s))

    async def predict_request(self, request: PredictRequest, timeout_s: float | None = None) -> PredictResponse:
        response: PredictResponse = await self._stub.Predict(
            request, timeout=self._timeout(timeout_s), metadata=self._metadata
        )
        return response

    async def stream(
        self, requests: AsyncIterable[PredictRequest] | Iterable[PredictRequest], timeout_s: float | None = None
    ) -> AsyncIterator[PredictStreamResponse]:
        call = self._stub.PredictStream(requests, timeout=timeout_s, metadata=self._metadata)
        async for item in call:
            yield item

    async def report_outcomes(
        self,
        outcomes: Iterable[Mapping[str, Any]] | None = None,
        *,
        timeout_s: float | None = None,
        **columns: Unpack[OutcomeColumns],
    ) -> int:
        return sum([(await self.report_request(r, timeout_s)).accepted for r in requests(outcomes, columns)])

    async def report_request(
        self, request: ReportOutcomesRequest, timeout_s: float | None = None
    ) -> ReportOutcomesResponse:
        response: ReportOutcomesResponse = await self._outcomes.Report(
            request, timeout=self._timeout(timeout_s), metadata=self._metadata
        )
        return response

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
