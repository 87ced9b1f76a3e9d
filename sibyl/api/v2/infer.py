"""One KServe V2 infer call, the same over both ports: gRPC (api.v2_servicer) and REST (api.rest.app) hand in
their request bytes with the function that reads them into an InferCall and the one that writes the Answer
back; every step between is here, once.

The steps: admit (max_in_flight, draining) before the bytes are read; read them (in a worker thread when
large: server.decode_offload_bytes); refuse unknown outputs before scoring (a refused call must not reach the
prediction log); resolve the model; decode the tensors to rows (api.v2.tensors, timed as the decode stage,
off the loop when large); score with the caller's trace context and deadline, the transport's response
written as the encode stage; count the call (metrics, and the statistics extension's counts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import grpc

from sibyl.api.status import code_of
from sibyl.api.v2.tensors import InferCall, to_rows
from sibyl.errors import InvalidArgument
from sibyl.observability.tracing import carrier
from sibyl.serving.answer import Answer
from sibyl.serving.routing import ROLE_NAMES
from sibyl.serving.service import PredictionService

R = TypeVar("R")
EXTENSIONS = ("model_repository", "model_configuration", "statistics")  # what the server metadata lists
OUTPUT = "score"  # the one output: FP32 [N, dim]


class Inference:
    """The V2 infer steps both transports share, over one PredictionService."""

    def __init__(self, service: PredictionService) -> None:
        self.service = service

    async def run(
        self,
        start: float,
        predictor: str,
        size: int,
        read: Callable[[], InferCall],
        respond: Callable[[Answer, InferCall, dict[str, str]], R],
        metadata: Callable[[], Iterable[tuple[str, Any]] | None],
        time_remaining: Callable[[], float | None] | None = None,
    ) -> R:
        """The call's response, or the error that refused it (already counted: the transport only answers it).
        start: time.perf_counter() when the call arrived; predictor: its name when the transport knows it
        before reading (REST's path), else ""; size: the request's bytes; read: those bytes as an InferCall;
        respond: the Answer as the transport's response, given the call and the response's parameters
        (answer_parameters); metadata: the call's headers (W3C trace context); time_remaining: the transport's
        own deadline, used when the call sets none (None: no deadline)."""
        service = self.service
        try:
            with service.admitted():
                call = await service.off_loop(size, read)
                predictor = call.model
                for wanted in call.outputs:  # before scoring: a refused call must not reach the prediction log
                    if wanted != OUTPUT:
                        raise InvalidArgument(f"output {wanted!r} unknown; sibyl answers one output {OUTPUT!r}")
                info = await service.model_info(call.model, call.version)
                matrix_inputs = {info.input_name: info.columns}
                decode = service.timed_decode
                predict, batch = await service.off_loop(size, decode, to_rows, call, info.override, matrix_inputs)
                trace = carrier(metadata()) if service.tracing is not None else None
                deadline = call.timeout_s
                if deadline is None and time_remaining is not None:
                    deadline = time_remaining()
                response = await service.score(
                    predict, batch, deadline, trace, lambda answer: respond(answer, call, answer_parameters(answer))
                )
        except Exception as exc:
            self.observe(predictor, code_of(exc), start)
            raise
        self.observe(predictor, grpc.StatusCode.OK, start, batch.num_rows)
        return response

    def observe(self, predictor: str, code: grpc.StatusCode, start: float, rows: int = 0) -> None:
        """Metrics, and the statistics extension's counts: V2 statistics count infer calls only."""
        self.service.observe_call(predictor, code.name, time.perf_counter() - start, rows, counted=True)


def answer_parameters(answer: Answer) -> dict[str, str]:
    """The response's parameters, over either port: the prediction id (the log's key) and who answered."""
    result = answer.scored[0]  # the model that answered (primary, arm or override)
    out = {"prediction_id": answer.prediction_id, "model": result.model.ref, "role": ROLE_NAMES[result.role]}
    if result.arm:
        out["arm"] = result.arm
    if answer.defaulted:
        out["defaulted"] = ",".join(answer.defaulted)
    return out
