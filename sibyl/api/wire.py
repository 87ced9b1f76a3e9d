"""Request bytes -> protobuf message, in pieces when the message is large, so the parse holds the GIL briefly.

upb parses in C and holds the GIL the whole time: one 64 MiB message of tiny fields (empty rows, empty strings)
takes seconds, and running it in a worker thread does not free the event loop, which needs the GIL too. A
message larger than `piece` bytes is parsed a piece at a time with MergeFromString, split at field boundaries
(the wire format concatenates: the pieces parse to the same message); a submessage field larger than a piece
is parsed the same way into its place. Between pieces the GIL can switch, so the loop keeps answering.

While splitting, each message's wire fields are counted (a run of unpacked repeated numbers counts once):
more than `max_fields` in one message is refused before it is parsed, since no request within the server's
limits needs that many. Servicers parse request bytes themselves, here: grpc's own deserializer answers UNKNOWN
when it fails, and malformed bytes are the caller's INVALID_ARGUMENT.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from sibyl.errors import InvalidArgument
from sibyl.serving.limits import Limits
from sibyl.serving.records import encode_varint as varint

if TYPE_CHECKING:  # the stubs give a message's descriptors either implementation's type (upb's at run time)
    from google._upb._message import Descriptor as UpbDescriptor
    from google._upb._message import FieldDescriptor as UpbField

    Field: TypeAlias = FieldDescriptor | UpbField
    MessageType: TypeAlias = Descriptor | UpbDescriptor

M = TypeVar("M", bound=Message)
PIECE_BYTES = 64 * 1024  # upb holds the GIL while it parses: a piece bounds that (docs/performance.md#large-requests)
_VARINT = rb"[\x80-\xff]{0,9}[\x00-\x7f]"
_VALUE = {0: _VARINT, 1: rb"[\x00-\xff]{8}", 5: rb"[\x00-\xff]{4}"}  # by wire type
_runs: dict[bytes, re.Pattern[bytes]] = {}
_T = FieldDescriptor
# Packable field types -> element size on the wire (0: varint)
_PACKED = {_T.TYPE_FLOAT: 4, _T.TYPE_FIXED32: 4, _T.TYPE_SFIXED32: 4, _T.TYPE_DOUBLE: 8, _T.TYPE_FIXED64: 8}
_PACKED |= {_T.TYPE_SFIXED64: 8, _T.TYPE_INT32: 0, _T.TYPE_INT64: 0, _T.TYPE_UINT32: 0, _T.TYPE_UINT64: 0}
_PACKED |= {_T.TYPE_SINT32: 0, _T.TYPE_SINT64: 0, _T.TYPE_BOOL: 0, _T.TYPE_ENUM: 0}


def max_fields(limits: Limits) -> int:
    """The most wire fields one message of an in-limits request needs: rows, context, entity columns and extra
    models of a PredictRequest; features, vectors and entities of a row; inputs, raw contents and parameters of
    a ModelInferRequest; ids of an entity column (runs of unpacked numbers count once)."""
    return limits.max_rows + 3 * limits.max_columns + limits.max_models + 64


def parse(message_type: type[M], data: bytes, max_fields: int, piece: int = PIECE_BYTES) -> M:
    """data as a message_type; whole when it is at most `piece` bytes, else in pieces (see the module doc)."""
    if len(data) <= piece:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            raise _malformed(message_type.DESCRIPTOR.full_name, str(exc)) from None
    message = message_type()
    _Splitter(message_type, memoryview(data), max_fields, piece).merge(message, 0, len(data))
    return message


def _malformed(name: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"message is not a valid {name} ({why}); check the client's proto")


class _Splitter:
    def __init__(self, message_type: type[Message], data: memoryview, max_fields: int, piece: int) -> None:
        self.name = message_type.DESCRIPTOR.full_name
        self.data, self.max_fields, self.piece = data, max_fields, piece

    def fail(self, why: str) -> InvalidArgument:
        return _malformed(self.name, why)

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        data, value, shift = self.data, 0, 0
        while pos < end and shift < 70:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7
        raise self.fail(f"truncated or overlong varint at byte {pos}")

    def merge_piece(self, message: Message, start: int, end: int) -> None:
        try:
            message.MergeFromString(self.data[start:end])  # type: ignore[arg-type]  # upb reads any buffer
        except DecodeError as exc:
            raise self.fail(str(exc)) from None

    def merge(self, message: Message, start: int, end: int) -> None:
        """data[start:end] into message: whole when small, else piece by piece at field boundaries."""
        if end - start <= self.piece:
            self.merge_piece(message, start, end)
            return
        fields = message.DESCRIPTOR.fields_by_number
        pos = pending = start  # data[pending:pos] is not parsed yet
        count = 0
        while pos < end:
            key_start = pos
            key, pos = self.varint(pos, end)
            key_end, number, wire = pos, key >> 3, key & 7
            field = fields.get(number)
            count += 1
            if count > self.max_fields:
                raise self.too_many(message)
            if wire == 2:
                length, pos = self.varint(pos, end)
                value_start, pos = pos, pos + length
                if pos > end:
                    raise self.fail(f"a field of {length} bytes runs past the end at byte {value_start}")
                large = field if field is not None and length > self.piece else None
                packed = large is not None and large.is_repeated and large.type in _PACKED
                if large is not None and (packed or large.type == FieldDescriptor.TYPE_MESSAGE):
                    if pending < key_start:
                        self.merge_piece(message, pending, key_start)
                    if packed:
                        self.merge_packed(message, bytes(self.data[key_start:key_end]), value_start, pos, large)
                    else:
                        self.merge_field(message, large, value_start, pos)
                    pending = pos
                    continue
            elif wire in _VALUE:
                pos = self.skip_value(key_start, pos, end, wire, field)
            else:
                raise self.fail(f"wire type {wire} at byte {key_start}")
            if pos - pending > self.piece and pending < key_start:
                self.merge_piece(message, pending, key_start)
                pending = key_start
        if pending < end:
            self.merge_piece(message, pending, end)

    def too_many(self, message: Message) -> InvalidArgument:
        return InvalidArgument(
            f"{message.DESCRIPTOR.name} has more than {self.max_fields} fields on the wire; no request within the "
            "server's limits needs that many (server.max_rows, server.max_columns)"
        )

    def merge_packed(self, message: Message, key: bytes, start: int, end: int, field: Field) -> None:
        """A large packed repeated field as several packed fields of at most a piece each (they concatenate)."""
        size = _PACKED[field.type]
        pos = start
        while pos < end:
            cut = min(end, pos + self.piece)
            if cut < end and size:
                cut = pos + max(size, (cut - pos) // size * size)
            elif cut < end:  # varints: cut after the last byte that ends one (< 0x80), at most 10 bytes back
                back = next((i for i in range(cut - 1, max(pos, cut - 10) - 1, -1) if self.data[i] < 0x80), None)
                cut = end if back is None else back + 1
            cut = min(cut, end)
            chunk = key + varint(cut - pos) + bytes(self.data[pos:cut])
            try:
                message.MergeFromString(chunk)
            except DecodeError as exc:
                raise self.fail(str(exc)) from None
            pos = cut

    def skip_value(self, key_start: int, pos: int, end: int, wire: int, field: Field | None) -> int:
        """Past one number (pos: just after its key); past the whole run when it is an unpacked repeated field,
        matched in C by a regex, so a run of a million numbers is not a million Python steps."""
        key = bytes(self.data[key_start:pos])
        if wire == 0:
            _, pos = self.varint(pos, end)
        else:
            pos += 8 if wire == 1 else 4
        if pos > end:
            raise self.fail(f"truncated number at byte {key_start}")
        if field is not None and field.is_repeated:
            run = _runs.get(key)
            if run is None:
                run = _runs[key] = re.compile(b"(?:" + re.escape(key) + _VALUE[wire] + b")*")
            match = run.match(self.data, pos, min(end, pos + self.piece))
            if match is not None:
                pos = match.end()
        return pos

    def merge_field(self, message: Message, field: Field, start: int, end: int) -> None:
        """One large submessage field, parsed in pieces into its place."""
        assert field.message_type is not None  # a message field
        if field.message_type.GetOptions().map_entry:
            self.merge_entry(message, field, field.message_type, start, end)
        elif field.is_repeated:
            self.merge(getattr(message, field.name).add(), start, end)
        else:
            self.merge(getattr(message, field.name), start, end)  # a singular field given twice merges, as on the wire

    def merge_entry(self, message: Message, field: Field, entry_type: MessageType, start: int, end: int) -> None:
        """A large map entry: its key, then a message value parsed in pieces straight into the key's slot."""
        entry = message_factory.GetMessageClass(entry_type)()  # type: ignore[arg-type]  # upb's, as it takes
        container = getattr(message, field.name)
        if entry_type.fields_by_name["value"].type != FieldDescriptor.TYPE_MESSAGE:
            self.merge(entry, start, end)
            container[getattr(entry, "key")] = getattr(entry, "value")  # noqa: B009  # map entries: key, value
            return
        values: list[tuple[int, int]] = []
        pos, count = start, 0
        while pos < end:
            key_start = pos
            key, pos = self.varint(pos, end)
            count += 1
            if count > self.max_fields:
                raise self.too_many(entry)
            if key & 7 == 2:
                length, pos = self.varint(pos, end)
                value_start, pos = pos, pos + length
                if pos > end:
                    raise self.fail(f"a field of {length} bytes runs past the end at byte {value_start}")
                if key >> 3 == 2:
                    values.append((value_start, pos))
                    continue
            elif key & 7 in _VALUE:
                pos = self.skip_value(key_start, pos, end, key & 7, None)
            else:
                raise self.fail(f"wire type {key & 7} at byte {key_start}")
            self.merge_piece(entry, key_start, pos)  # the key (and anything unknown): small
        value = container[getattr(entry, "key")]  # noqa: B009
        value.Clear()  # the last entry of a key wins, as in a whole parse; its value fields merge
        for value_start, value_end in values:
            self.merge(value, value_start, value_end)
