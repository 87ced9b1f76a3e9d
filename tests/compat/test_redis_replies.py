"""compat.redis_replies against a real Redis, on the installed redis-py and hiredis: asyncio and blocking
connections get the hiredis parser, whose reader the bulk read drains (read_response is never called), across
many socket reads and with an error reply in place; with redis-py's pure-Python parser every reply goes through
read_response, and both read the same replies."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pytest
import redis
import redis.asyncio
from redis._parsers import _AsyncRESP2Parser, _RESP2Parser
from redis.exceptions import ResponseError

from sibyl.compat import redis_replies
from tests.support.servers import RedisServer

ENTITIES = 3_000  # replies of ~40 bytes: many socket reads of redis-py's 64 KiB buffer
WRONG_TYPE = 1_500  # a string where a hash is expected: WRONGTYPE, an error reply in its place
VERSIONS = f"redis-py {version('redis')}, hiredis {version('hiredis')}"


def seed(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url)
    with client.pipeline(transaction=False) as pipe:
        for i in range(ENTITIES):
            pipe.hset(f"e:{i}", mapping={"a": f"{i}", "b": "x" * 16})
        pipe.delete(f"e:{WRONG_TYPE}")
        pipe.set(f"e:{WRONG_TYPE}", "a string, not a hash")
        pipe.execute()
    client.close()


def commands() -> list[tuple[str, ...]]:
    """One HMGET per entity, and one of a key that does not exist."""
    return [("HMGET", f"e:{i}", "a", "b", "c") for i in range(ENTITIES)] + [("HMGET", "absent", "a")]


def check(replies: list[Any]) -> None:
    assert len(replies) == ENTITIES + 1
    assert isinstance(replies[WRONG_TYPE], ResponseError) and "WRONGTYPE" in str(replies[WRONG_TYPE])
    for i in (0, 7, ENTITIES - 1):
        assert replies[i] == [f"{i}".encode(), b"x" * 16, None]
    assert replies[-1] == [None]


def counting(conn: Any) -> Callable[[], int]:
    """Counts the connection's read_response calls (redis-py's reply-by-reply read)."""
    calls = 0
    inner = conn.read_response

    def read_response(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return inner(*args, **kwargs)

    conn.read_response = read_response
    return lambda: calls


def test_hiredis_and_the_parser_module_are_installed() -> None:
    assert redis_replies.available(), f"{VERSIONS}: redis._parsers.hiredis.NOT_ENOUGH_DATA or hiredis is gone"


async def test_an_asyncio_connection_reads_its_replies_in_bulk(fresh_redis: RedisServer) -> None:
    seed(fresh_redis)
    client = redis.asyncio.Redis.from_url(fresh_redis.url)
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        assert redis_replies.takes_bulk_read(conn), f"{VERSIONS}: the asyncio parser has no hiredis reader"
        calls = counting(conn)
        await conn.send_packed_command(conn.pack_commands(commands()), check_health=False)
        check(await redis_replies.read_replies(conn, ENTITIES + 1))
        assert calls() == 0, "read_response was called: the bulk read was not taken"
        await conn.send_command("PING")  # the connection is in step after the bulk read
        assert await conn.read_response() == b"PONG"
    finally:
        await pool.release(conn)
        await client.aclose()


def test_a_blocking_connection_reads_its_replies_in_bulk(fresh_redis: RedisServer) -> None:
    seed(fresh_redis)
    client = redis.Redis.from_url(fresh_redis.url)
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        assert redis_replies.takes_bulk_read_blocking(conn), f"{VERSIONS}: the blocking parser has no hiredis reader"
        calls = counting(conn)
        conn.send_packed_command(conn.pack_commands(commands()), check_health=False)
        check(redis_replies.read_replies_blocking(conn, ENTITIES + 1))
        assert calls() == 0, "read_response was called: the bulk read was not taken"
        conn.send_command("PING")
        assert conn.read_response() == b"PONG"
    finally:
        pool.release(conn)
        client.close()


@pytest.mark.parametrize("blocking", [False, True], ids=["asyncio", "blocking"])
async def test_without_hiredis_every_reply_goes_through_read_response(fresh_redis: RedisServer, blocking: bool) -> None:
    seed(fresh_redis)
    if blocking:
        client = redis.Redis.from_url(fresh_redis.url, parser_class=_RESP2Parser)
        conn = client.connection_pool.get_connection()
        assert not redis_replies.takes_bulk_read_blocking(conn)
        calls = counting(conn)
        conn.send_packed_command(conn.pack_commands(commands()), check_health=False)
        replies = redis_replies.read_replies_blocking(conn, ENTITIES + 1)
        client.connection_pool.release(conn)
        client.close()
    else:
        aclient = redis.asyncio.Redis.from_url(fresh_redis.url, parser_class=_AsyncRESP2Parser)
        aconn = await aclient.connection_pool.get_connection()
        assert not redis_replies.takes_bulk_read(aconn)
        calls = counting(aconn)
        await aconn.send_packed_command(aconn.pack_commands(commands()), check_health=False)
        replies = await redis_replies.read_replies(aconn, ENTITIES + 1)
        await aclient.connection_pool.release(aconn)
        await aclient.aclose()
    assert calls() == ENTITIES + 1
    check(replies)
