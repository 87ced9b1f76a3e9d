import pytest

from sibyl.serving.records import encode_varint
from sibyl.v1.predlog_pb2 import PredictionLog


@pytest.mark.parametrize("size", [1, 127, 128, 300, 16_383, 16_384, 2_097_152])
def test_varint_is_the_length_prefix_protobuf_writes(size: int) -> None:
    """PredictionLog.host (field 18, a string) serialized by upb: tag (2 bytes), varint length, the bytes."""
    wire = PredictionLog(host="x" * size).SerializeToString()
    assert wire[2:] == encode_varint(size) + b"x" * size


def test_zero_is_one_byte() -> None:
    assert encode_varint(0) == b"\x00"
