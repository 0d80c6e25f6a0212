"""Many commands packed in one go and sent in one write: a MULTI/EXEC, or a read pipeline.

redis-py's pipeline re-checks and re-encodes every argument of every
command in Python before hiredis packs it: for a batch of 1,000 memories
(~40 arguments each) that was a fifth of `add_many`'s time. Here hiredis
packs each command's arguments directly (they are str, bytes, int or
float already); the connection, its errors and its pool are still
redis-py's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import redis
from hiredis import pack_command
from redis.exceptions import NoScriptError  # from the redis[hiredis] dependency

try:  # what redis-py's hiredis reader returns while a reply is incomplete
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _INCOMPLETE
except ImportError:  # pragma: no cover - another redis-py layout: replies read one by one
    _INCOMPLETE = None

Command = tuple[str | bytes | int | float, ...]


class Pending:
    """Commands sent on a pooled connection of their own; their replies are read by
    `wait`. Until then the caller may do other work while Redis serves them (a
    move writes one batch to L2 while Redis reads the next)."""

    def __init__(self, client: redis.Redis, packed: bytes, count: int) -> None:
        self._pool = client.connection_pool
        self._count = count
        conn: Any = self._pool.get_connection()  # redis-py's Connection methods are untyped
        try:
            conn.send_packed_command([packed])  # one sendall, not one per command
        except BaseException:
            self._drop(conn)
            raise
        self._conn: Any = conn

    def wait(self) -> list[Any]:
        """The replies, in order (error replies returned in place); once only."""
        conn, self._conn = self._conn, None
        if conn is None:
            raise RuntimeError("replies already read or cancelled")
        try:
            replies = read_replies(conn, self._count)
        except BaseException:
            self._drop(conn)
            raise
        self._pool.release(conn)
        return replies

    def cancel(self) -> None:
        """Give up on the replies (if not read yet): the connection is closed, so
        they never reach its next user. The commands may still run."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._drop(conn)

    def _drop(self, conn: Any) -> None:
        conn.disconnect()  # unread replies must not reach the next user
        self._pool.release(conn)


def pack_transaction(commands: Sequence[Command]) -> bytes:
    """MULTI, `commands`, EXEC, packed in RESP (read back by `executed`)."""
    # hiredis's stub says a 1-tuple; it takes any tuple of str, bytes, int, float
    packed = [pack_command(("MULTI",)), *(pack_command(c) for c in commands)]  # type: ignore[arg-type]
    packed.append(pack_command(("EXEC",)))
    return b"".join(packed)


def transaction(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Run `commands` atomically in one round trip; returns EXEC's replies.

    A command Redis refuses when queueing aborts the whole transaction
    (nothing is applied) and its error is raised.
    """
    # +OK, a +QUEUED each, EXEC's
    return executed(Pending(client, pack_transaction(commands), len(commands) + 2).wait())


def executed(replies: list[Any]) -> list[Any]:
    """EXEC's replies from a transaction's (MULTI's, each command's, EXEC's), or the
    first error: MULTI's, a refused command's (Redis then aborts EXEC), or a
    command's that failed while running (e.g. WRONGTYPE)."""
    multi, queued, done = replies[0], replies[1:-1], replies[-1]
    if isinstance(multi, redis.ResponseError):
        raise multi
    refused = next((r for r in queued if isinstance(r, redis.ResponseError)), None)
    if isinstance(done, redis.ResponseError):  # EXECABORT after a refused command
        raise refused or done
    for reply in done:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return list(done)


def pipeline(client: redis.Redis, commands: Sequence[Command], *, check: bool = True) -> list[Any]:
    """Run `commands` in one round trip, not atomically; returns raw replies.

    Replies are as the parser gives them (RESP2: a hash is a flat list);
    the first error reply is raised, or with `check=False` returned in place.
    """
    if not commands:
        return []
    packed = b"".join(pack_command(c) for c in commands)  # type: ignore[arg-type]
    return pipeline_packed(client, packed, len(commands), check=check)


def pipeline_packed(
    client: redis.Redis, packed: bytes, count: int, *, check: bool = True
) -> list[Any]:
    """`pipeline` of `count` commands already packed in RESP (e.g. by `pack_many`)."""
    if not count:
        return []
    replies = Pending(client, packed, count).wait()
    for reply in replies:
        if check and isinstance(reply, redis.ResponseError):
            raise reply
    return replies


def read_replies(conn: Any, count: int) -> list[Any]:
    """The next `count` replies of `conn`; error replies are returned, not raised.

    Straight from the connection's hiredis reader when it has one: redis-py's
    `read_response` costs ~3 µs a reply around the parsing, as much as Redis
    spends on an HMGET of a record. RESP3 push messages (which tiermem's pool
    connections do not subscribe to) are handed to redis-py, as it would.
    """
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    fill = getattr(parser, "read_from_socket", None)
    resp2 = str(getattr(conn, "protocol", "")) == "2"
    push = getattr(parser, "_hiredis_PushNotificationType", None)  # hiredis >= 3.2
    if reader is None or fill is None or _INCOMPLETE is None or not (resp2 or push):
        return [_reply(conn) for _ in range(count)]
    out: list[Any] = []
    while len(out) < count:
        reply = reader.gets()
        if reply is _INCOMPLETE:
            try:
                fill()
            except OSError as exc:  # as `read_response` translates it
                raise redis.ConnectionError(f"Error while reading from Redis: {exc}") from exc
        elif isinstance(reply, redis.ConnectionError):  # what redis-py raises too
            raise reply
        elif push is not None and isinstance(reply, push):
            parser.handle_push_response(reply)  # type: ignore[union-attr]
        else:
            out.append(reply)
    return out


def _reply(conn: Any) -> Any:
    """The next reply; an error reply is returned, not raised (the rest still follow)."""
    try:
        return conn.read_response()
    except redis.ResponseError as exc:
        return exc


def pack_many(name: bytes, keys: Sequence[str], tail: Sequence[bytes]) -> bytes:
    """``name key *tail`` for every key, packed in RESP as hiredis would (keys UTF-8).

    The head and tail are packed once, not once per key: for an HMGET of a
    record's ~20 fields, hiredis's per-argument packing was ~2 µs of the ~8 µs
    a record read cost.
    """
    head = b"*%d\r\n$%d\r\n%s\r\n" % (len(tail) + 2, len(name), name)
    packed_tail = b"".join(b"$%d\r\n%s\r\n" % (len(t), t) for t in tail)
    parts = []
    for key in keys:
        raw = key.encode()
        parts.append(b"%s$%d\r\n%s\r\n%s" % (head, len(raw), raw, packed_tail))
    return b"".join(parts)


def scripts(
    client: redis.Redis, script: Any, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
) -> list[Any]:
    """Run a registered Lua `script` (redis-py `Script`) once per (keys, args), in one
    round trip, and return the replies: EVALSHA, and the calls Redis did not know
    the script for again after loading it. (redis-py's own pipeline asks SCRIPT
    EXISTS first: one more round trip; its `Script` encodes each key in Python.)
    The first error reply is raised."""
    return ScriptsSent(client, script, calls).wait()


class ScriptsSent:
    """`scripts`, sent now; `wait` reads the replies (and runs again, after loading
    the script, the calls Redis did not know it for). Until `wait` or `cancel`, the
    replies hold a pooled connection, so the caller may work while Redis runs them."""

    def __init__(
        self, client: redis.Redis, script: Any, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
    ) -> None:
        self._client, self._script = client, script
        self._commands = [("EVALSHA", script.sha, len(k), *k, *a) for k, a in calls]
        packed = b"".join(pack_command(c) for c in self._commands)
        self._sent = Pending(client, packed, len(self._commands)) if self._commands else None

    def wait(self) -> list[Any]:
        """The replies, in order; the first error reply is raised."""
        replies = self._sent.wait() if self._sent is not None else []
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            self._client.script_load(self._script.script)
            again = pipeline(self._client, [self._commands[i] for i in missing], check=False)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    def cancel(self) -> None:
        """Give up on the replies (`Pending.cancel`)."""
        if self._sent is not None:
            self._sent.cancel()


def stream(
    client: redis.Redis,
    script: Any,
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
    window: int = 4,
) -> Iterator[Any]:
    """`scripts`, but yielding each reply as it arrives, with at most `window`
    calls in flight: Redis runs the next calls while the caller works on a reply
    (on two cores, one decodes while the other serves). A reply Redis did not
    know the script for is fetched again through `scripts`, which loads it.
    The first error reply is raised."""
    commands = [pack_command(("EVALSHA", script.sha, len(k), *k, *a)) for k, a in calls]
    pool = client.connection_pool
    conn: Any = pool.get_connection()
    sent = done = 0
    try:
        while done < len(commands):
            if sent < min(done + window, len(commands)):
                upto = min(done + window, len(commands))
                conn.send_packed_command([b"".join(commands[sent:upto])])
                sent = upto
            reply = read_replies(conn, 1)[0]
            if isinstance(reply, NoScriptError):
                reply = scripts(client, script, [calls[done]])[0]
            elif isinstance(reply, redis.ResponseError):
                raise reply
            done += 1
            yield reply
    finally:
        if done < sent:  # stopped early: unread replies must not reach the next user
            conn.disconnect()
        pool.release(conn)
