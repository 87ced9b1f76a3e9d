"""What the Kafka sink keeps per record: the (key, value) it sends and the bytes it spools."""

from __future__ import annotations

import struct
from typing import NamedTuple

from sibyl.predlog.stream import Record

KEY_LEN = struct.Struct(">H")
Item = tuple[bytes, bytes]  # key (the prediction id), serialized record (PredictionLog, Outcome)


def spool_payload(key: bytes, value: bytes) -> bytes:
    """What one spooled record holds: key length (u16) | key | serialized record."""
    return KEY_LEN.pack(len(key)) + key + value


def split_payload(payload: bytes) -> Item:
    (n,) = KEY_LEN.unpack_from(payload)
    return payload[2 : 2 + n], payload[2 + n :]


def item(record: Record) -> Item:
    return record.prediction_id.encode(), record.SerializeToString()


class Pending(NamedTuple):
    key: bytes
    value: bytes
    sent_at: float
    replay: bool  # from the spool: a failure leaves it there (not spooled again)
