"""Protobuf wire-format pieces that sibyl writes itself (serving.records' packed floats, api.wire's pieces)."""

from __future__ import annotations


def varint(value: int) -> bytes:
    """A non-negative int as a base-128 varint: 7 bits per byte, low first, high bit = more to come."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
