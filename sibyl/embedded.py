"""Embedded mode: sibyl's registry, feature fetch, shadows and prediction log inside a Python program.

    with sibyl.Predictor.open() as predictor:          # settings from env SIBYL_* / defaults
        response = predictor.predict(predictor="eta", rows=[{"amount": 2.0}], context={"consumer_id": "7"})

The parts are those SibylServer builds, minus gRPC: one PredictionService, so scores, defaults and log
records equal the server's. It runs its own event loop in a background thread; `predict` blocks the caller,
`apredict` can be awaited from any event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
from prometheus_client import CollectorRegistry

from sibyl.app import App
from sibyl.config import Settings, load_settings
from sibyl.errors import InvalidArgument
from sibyl.observability.metrics import Metrics
from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, FeatureRow, FloatVector, PredictRequest, PredictResponse

T = TypeVar("T")
START_TIMEOUT_S = 120.0  # model loads from a slow store


def build_request(
    predictor: str,
    rows: Sequence[Mapping[str, float | Sequence[float]]] | None = None,
    *,
    features: np.ndarray | None = None,
    feature_names: Sequence[str] = (),
    context: Mapping[str, str] | None = None,
    row_entities: Mapping[str, Sequence[str]] | None = None,
    request_id: str = "",
    extra_models: Sequence[str] = (),
    model_override: str = "",
) -> PredictRequest:
    """rows: one {feature: value or vector} per row; or features: [N, len(feature_names)] (dense, faster)."""
    request = PredictRequest(
        request_id=request_id,
        predictor=predictor,
        context=dict(context or {}),
        extra_models=list(extra_models),
        model_override=model_override,
    )
    if rows is not None and features is not None:
        raise InvalidArgument("give rows or features (with feature_names), not both")
    if features is not None:
        matrix = np.ascontiguousarray(features, dtype="<f4")
        if matrix.ndim != 2 or matrix.shape[1] != len(feature_names):
            raise InvalidArgument(
                f"features has shape {matrix.shape}; want [rows, {len(feature_names)}] (feature_names)"
            )
        request.dense.CopyFrom(
            DenseRows(feature_names=list(feature_names), values=matrix.tobytes(), num_rows=matrix.shape[0])
        )
        for entity, ids in (row_entities or {}).items():
            request.row_entities.append(EntityColumn(entity=entity, ids=[str(i) for i in ids]))
        return request
    for r, row in enumerate(rows or ()):
        out = FeatureRow()
        for name, value in row.items():
            if isinstance(value, int | float | np.floating | np.integer):
                out.features[name] = float(value)
            else:
                out.vectors[name].CopyFrom(FloatVector(values=[float(v) for v in value]))
        for entity, ids in (row_entities or {}).items():
            out.entities[entity] = str(ids[r])
        request.rows.append(out)
    return request


class Predictor:
    """sibyl in-process. Use `Predictor.open(settings)` or `with Predictor.open() as p:`; close() when done."""

    def __init__(self, settings: Settings | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings or load_settings()
        self.metrics = metrics or Metrics(CollectorRegistry())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, settings: Settings | None = None, metrics: Metrics | None = None) -> Predictor:
        predictor = cls(settings, metrics)
        predictor.start()
        return predictor

    # ---- lifecycle
    def start(self) -> None:
        loop = _new_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="sibyl-embedded", daemon=True)
        self._thread.start()
        self._loop = loop
        try:
            self._call(self._start(), START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    async def _start(self) -> None:
        self.app = await App.build(self.settings, self.metrics)
        self.registry, self.service = self.app.registry, self.app.service

    async def _stop(self, timeout_s: float) -> None:
        if hasattr(self, "app"):
            await self.app.close(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish shadows, flush the prediction log, stop the loop. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(self._stop(timeout_s), loop).result(timeout_s * 2)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
            if not thread.is_alive():
                loop.close()

    def __enter__(self) -> Predictor:
        if self._loop is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Predictor:
        if self._loop is None:
            await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)

    # ---- scoring
    def predict(
        self, request: PredictRequest | None = None, /, *, timeout_s: float | None = None, **kwargs: Any
    ) -> PredictResponse:
        """A PredictRequest, or build_request's keyword arguments (predictor=..., rows=... or features=...)."""
        return self._call(self.service.predict(_request(request, kwargs), timeout_s), timeout_s)

    async def apredict(
        self, request: PredictRequest | None = None, /, *, timeout_s: float | None = None, **kwargs: Any
    ) -> PredictResponse:
        future = self._submit(self.service.predict(_request(request, kwargs), timeout_s))
        return await asyncio.wrap_future(future)

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._loop is None:
            coro.close()
            raise RuntimeError("Predictor is closed: use Predictor.open() or `with Predictor.open() as p`")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _call(self, coro: Coroutine[Any, Any, T], timeout_s: float | None) -> T:
        future = self._submit(coro)
        try:
            return future.result(None if timeout_s is None else timeout_s + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise


def _request(request: PredictRequest | None, kwargs: dict[str, Any]) -> PredictRequest:
    if request is not None:
        if kwargs:
            raise InvalidArgument("give a PredictRequest or keyword arguments, not both")
        return request
    if "predictor" not in kwargs:
        raise InvalidArgument("predict() needs a PredictRequest or predictor=... (and rows=... or features=...)")
    return build_request(**kwargs)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # the server's loop: same behaviour, faster

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()
