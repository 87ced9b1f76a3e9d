"""gRPC adapter for sibyl.v1.OutcomeService: admits, parses, delegates to api.outcomes.OutcomeIntake.

On the Predict port, behind the same token interceptor, TLS and message size limit; admitted like a Predict call
(draining, max_in_flight) before its bytes are parsed; a large message is parsed and checked in a worker thread.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import DecodeError

from sibyl.api.outcomes import OutcomeIntake
from sibyl.api.status import WORKER_METADATA, to_status
from sibyl.errors import InvalidArgument
from sibyl.serving.service import PredictionService
from sibyl.v1.outcome_pb2 import ReportOutcomesRequest, ReportOutcomesResponse

SERVICE = "sibyl.v1.OutcomeService"
Context = grpc.aio.ServicerContext[Any, Any]


def add_to_server(servicer: OutcomeServicer, server: grpc.aio.Server) -> None:
    """As v1_servicer's: the request arrives as bytes, so a malformed one is INVALID_ARGUMENT, not UNKNOWN."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Report": grpc.unary_unary_rpc_method_handler(
            servicer.Report, response_serializer=ReportOutcomesResponse.SerializeToString
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


class OutcomeServicer:
    def __init__(self, service: PredictionService, intake: OutcomeIntake) -> None:
        self.service, self.intake = service, intake

    def _parse(self, data: bytes) -> ReportOutcomesRequest:
        try:
            request = ReportOutcomesRequest.FromString(data)
        except DecodeError as exc:
            self.intake.count_rejected(0)
            raise InvalidArgument(f"not a sibyl.v1.ReportOutcomesRequest: {exc}") from None
        self.intake.check(request.outcomes)
        return request

    async def Report(self, data: bytes, context: Context) -> ReportOutcomesResponse:
        try:
            with self.service.admitted():
                request = await self.service.off_loop(len(data), self._parse, data)
                accepted = self.intake.report(request.outcomes)
        except Exception as exc:
            code, message = to_status(exc)
            await context.abort(code, message, WORKER_METADATA)
        context.set_trailing_metadata(WORKER_METADATA)
        return ReportOutcomesResponse(accepted=accepted)
