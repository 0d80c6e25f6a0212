"""Many commands packed in one go and sent in one write: a MULTI/EXEC, or a read pipeline.

redis-py's pipeline re-checks and re-encodes every argument of every
command in Python before hiredis packs it: for a batch of 1,000 memories
(~40 arguments each) that was a fifth of `add_many`'s time. Here hiredis
packs each command's arguments directly (they are str, bytes, int or
float already); the connection, its errors and its pool are still
redis-py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from hiredis import pack_command
from redis.exceptions import NoScriptError  # from the redis[hiredis] dependency

Command = tuple[str | bytes | int | float, ...]


def transaction(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Run `commands` atomically in one round trip; returns EXEC's replies.

    A command Redis refuses when queueing aborts the whole transaction
    (nothing is applied) and its error is raised.
    """
    # hiredis's stub says a 1-tuple; it takes any tuple of str, bytes, int, float
    packed = [pack_command(("MULTI",)), *(pack_command(c) for c in commands)]  # type: ignore[arg-type]
    packed.append(pack_command(("EXEC",)))
    pool = client.connection_pool
    conn: Any = pool.get_connection()  # redis-py's Connection methods are untyped
    try:
        conn.send_packed_command([b"".join(packed)])  # one sendall, not one per command
        conn.read_response()  # +OK to MULTI
        refused: redis.ResponseError | None = None
        for _ in commands:
            try:
                conn.read_response()  # +QUEUED
            except redis.ResponseError as exc:
                refused = refused or exc
        try:
            replies = conn.read_response()
        except redis.ResponseError:  # EXECABORT after a refused command
            if refused is None:
                raise
            raise refused from None
        if isinstance(replies, redis.ResponseError):
            raise replies
        for reply in replies:  # a command that failed while running (e.g. WRONGTYPE)
            if isinstance(reply, redis.ResponseError):
                raise reply
        return list(replies)
    except BaseException:
        conn.disconnect()  # unread replies must not reach the next user
        raise
    finally:
        pool.release(conn)


def pipeline(client: redis.Redis, commands: Sequence[Command], *, check: bool = True) -> list[Any]:
    """Run `commands` in one round trip, not atomically; returns raw replies.

    Replies are as the parser gives them (RESP2: a hash is a flat list);
    the first error reply is raised, or with `check=False` returned in place.
    """
    if not commands:
        return []
    packed = b"".join(pack_command(c) for c in commands)  # type: ignore[arg-type]
    pool = client.connection_pool
    conn: Any = pool.get_connection()
    try:
        conn.send_packed_command([packed])
        replies = [_reply(conn) for _ in commands]
    except BaseException:
        conn.disconnect()  # unread replies must not reach the next user
        raise
    finally:
        pool.release(conn)
    for reply in replies:
        if check and isinstance(reply, redis.ResponseError):
            raise reply
    return replies


def _reply(conn: Any) -> Any:
    """The next reply; an error reply is returned, not raised (the rest still follow)."""
    try:
        return conn.read_response()
    except redis.ResponseError as exc:
        return exc


def scripts(
    client: redis.Redis, script: Any, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
) -> list[Any]:
    """Run a registered Lua `script` (redis-py `Script`) once per (keys, args), in one
    round trip, and return the replies: EVALSHA, and the calls Redis did not know
    the script for again after loading it. (redis-py's own pipeline asks SCRIPT
    EXISTS first: one more round trip; its `Script` encodes each key in Python.)
    The first error reply is raised."""
    commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
    replies = pipeline(client, commands, check=False)
    missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
    if missing:
        client.script_load(script.script)
        again = pipeline(client, [commands[i] for i in missing], check=False)
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return replies
