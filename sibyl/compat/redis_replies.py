"""Many pipelined replies read off one redis-py connection: in bulk through its hiredis parser, else one by one.

With redis-py's hiredis parser (redis[hiredis], a dependency), hiredis parses every reply a socket read holds, in
C; redis-py's read_response adds a Python call and its checks per reply around that
(docs/performance.md#redis-bulk-read). The bulk read uses the parser's reader (`_reader`), its socket read
(`read_from_socket`) and `NOT_ENOUGH_DATA`, none of them public API (the same in redis-py 6 to 8):
`takes_bulk_read(conn)` and `takes_bulk_read_blocking(conn)` say whether a connection gets it, and
tests/compat/test_redis_replies.py fails against a real Redis when it does not. With any other parser each reply
goes through read_response; both read the same replies.
"""

from __future__ import annotations

import math
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

try:  # a dependency (redis[hiredis]); without it every reply goes through redis-py's read_response
    import hiredis
    from redis._parsers.hiredis import NOT_ENOUGH_DATA

    READER: type | None = hiredis.Reader  # what the hiredis parser's `_reader` is
except ImportError:  # pragma: no cover
    READER = None
    NOT_ENOUGH_DATA = object()


def available() -> bool:
    """hiredis is installed, and redis-py has the hiredis parser module the bulk read relies on."""
    return READER is not None


def takes_bulk_read(conn: Any) -> bool:
    """read_replies reads this connected connection's replies in bulk (its parser holds a hiredis Reader)."""
    parser = getattr(conn, "_parser", None)
    return (
        READER is not None
        and isinstance(getattr(parser, "_reader", None), READER)
        and hasattr(parser, "read_from_socket")
    )


def takes_bulk_read_blocking(conn: Any) -> bool:
    """takes_bulk_read for a blocking connection: redis-py 6's blocking parser may also hold one reply it peeked at
    (can_read), which only its read_response returns: then the replies go one by one."""
    parser = getattr(conn, "_parser", None)
    return takes_bulk_read(conn) and getattr(parser, "_next_response", NOT_ENOUGH_DATA) is NOT_ENOUGH_DATA


# The check for unread data or a connection the server closed: can_read_destructive in every redis-py from the floor
# (6.0) up, deprecated in 8.0 for can_read (the same body); the deprecated one's wrapper costs a warnings check per
# call, a visible share of a 1-row fetch (docs/features.md#measured).
_CAN_READ = "can_read" if hasattr(AbstractConnection, "can_read") else "can_read_destructive"


async def ensure_connected(conn: Any) -> None:
    """An asyncio connection ready for a command: connected, not closed by the server, nothing unread (the checks
    of redis-py's pool, ConnectionPool.ensure_connection, without its lock and events)."""
    if conn.is_connected:
        try:
            if not await getattr(conn, _CAN_READ)():
                return
        except (RedisConnectionError, TimeoutError, OSError):  # closed by the server (restart, idle timeout)
            pass
        await conn.disconnect()
    await conn.connect()


async def send_packed(conn: Any, packed: bytes) -> None:
    """send_packed_command without its per-write timer (asyncio.wait_for: a task and a loop turn per write, when
    socket_timeout is set): the caller's budget bounds the round trip (features.fetcher)."""
    writer = conn._writer
    if writer is None or writer.transport.is_closing():
        raise RedisConnectionError("Connection closed by the server before write")
    writer.write(packed)
    await writer.drain()


async def read_replies(conn: Any, count: int) -> list[Any]:
    """`count` replies, undecoded; an error reply (e.g. WRONGTYPE) is a ResponseError in its place, read whole."""
    if not takes_bulk_read(conn):
        return [await _read_one(conn) for _ in range(count)]
    parser = conn._parser
    replies: list[Any] = []
    while not _move_parsed_replies(parser, replies, count):
        await parser.read_from_socket()  # raises ConnectionError when the server closed the connection
    return replies


def read_replies_blocking(conn: Any, count: int) -> list[Any]:
    """read_replies for a blocking redis-py connection (the batch reader, features.bulk)."""
    if not takes_bulk_read_blocking(conn):
        return [_read_one_blocking(conn) for _ in range(count)]
    parser = conn._parser
    replies: list[Any] = []
    while not _move_parsed_replies(parser, replies, count):
        parser.read_from_socket()  # the socket timeout bounds each wait; ConnectionError when closed
    return replies


def _move_parsed_replies(parser: Any, replies: list[Any], count: int) -> bool:
    """Moves the replies the parser's reader holds into `replies`; True once there are `count`."""
    push = getattr(parser, "_hiredis_PushNotificationType", None) or ()  # RESP3 out-of-band messages
    gets = parser._reader.gets
    while len(replies) < count:
        reply = gets(False)  # False: bytes as they are
        if reply is NOT_ENOUGH_DATA:
            return False
        if not isinstance(reply, push):  # a push is not a reply (this connection subscribes to nothing)
            replies.append(reply)
    return True


async def _read_one(conn: Any) -> Any:
    try:  # timeout=inf: the caller's budget bounds the whole read, not each reply
        return await conn.read_response(disable_decoding=True, timeout=math.inf)
    except ResponseError as exc:  # an error reply is read whole: keep going
        return exc


def _read_one_blocking(conn: Any) -> Any:
    try:
        return conn.read_response(disable_decoding=True)
    except ResponseError as exc:
        return exc
