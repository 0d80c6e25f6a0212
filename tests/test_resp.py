"""`tiers.resp` (pre-packed MULTI/EXEC and read pipelines) against a real Redis."""

from __future__ import annotations

import uuid

import pytest
import redis

from tiermem.tiers import resp
from tiermem.tiers.resp import pipeline, transaction


def test_applies_every_command_and_returns_exec_replies(
    redis_client: redis.Redis, prefix: str
) -> None:
    h, z = f"{prefix}:h", f"{prefix}:z"
    got = transaction(
        redis_client,
        [("HSET", h, "a", b"\x00\xff", "n", 7, "f", 0.1), ("ZADD", z, 2.5, "m"), ("INCR", z + "v")],
    )
    assert got == [3, 1, 1]
    assert redis_client.hgetall(h) == {b"a": b"\x00\xff", b"n": b"7", b"f": b"0.1"}
    assert redis_client.zscore(z, "m") == 2.5


def test_a_refused_command_applies_nothing(redis_client: redis.Redis, prefix: str) -> None:
    """Redis refuses a malformed command when queueing: EXECABORT, nothing written."""
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        transaction(redis_client, [("SET", f"{prefix}:a", "1"), ("HSET", f"{prefix}:h", "odd")])
    assert redis_client.exists(f"{prefix}:a") == 0
    assert transaction(redis_client, [("SET", f"{prefix}:a", "2")]) == [b"OK"]  # still usable


def test_a_command_failing_while_running_raises(redis_client: redis.Redis, prefix: str) -> None:
    redis_client.set(f"{prefix}:s", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        transaction(redis_client, [("HSET", f"{prefix}:s", "f", "v")])
    assert redis_client.get(f"{prefix}:s") == b"x"


def test_pipeline_returns_raw_replies_in_order(redis_client: redis.Redis, prefix: str) -> None:
    h = f"{prefix}:ph"
    redis_client.hset(h, mapping={"a": b"\x00\xff", "n": 7})
    got = pipeline(
        redis_client,
        [("HGETALL", h), ("HMGET", h, "n", "nope"), ("HSTRLEN", h, "a"), ("GET", h + "x")],
    )
    raw = got[0]  # RESP2: a flat [field, value, ...] list; RESP3: a map
    pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
    assert dict(pairs) == {b"a": b"\x00\xff", b"n": b"7"}
    assert got[1:] == [[b"7", None], 2, None]
    assert pipeline(redis_client, []) == []


def test_pipeline_error_raises_and_the_pool_stays_usable(
    redis_client: redis.Redis, prefix: str
) -> None:
    redis_client.set(f"{prefix}:s", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        pipeline(redis_client, [("HGETALL", f"{prefix}:s"), ("GET", f"{prefix}:s")])
    assert pipeline(redis_client, [("GET", f"{prefix}:s")]) == [b"x"]  # no stale replies


def test_scripts_load_an_unknown_script_once_and_run_every_call(
    redis_client: redis.Redis, prefix: str
) -> None:
    """A script Redis has never seen (unique body): EVALSHA fails with NOSCRIPT,
    it is loaded, and each call runs exactly once."""
    body = f"-- {uuid.uuid4()}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
    script = redis_client.register_script(body)
    key = f"{prefix}:n"
    assert resp.scripts(redis_client, script, [([key], [2]), ([key], [3])]) == [2, 5]
    assert int(redis_client.get(key)) == 5
    resp.scripts(redis_client, script, [([key], [1])])  # known now: no reload
    assert int(redis_client.get(key)) == 6
    redis_client.hset(f"{prefix}:h", "f", "v")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        resp.scripts(redis_client, script, [([f"{prefix}:h"], [1])])
