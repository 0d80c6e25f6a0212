"""L1, the hot tier: one Redis HASH per memory plus per-namespace indexes.

Layout (all key names come from `keys.Keys`):

- ``record(ns, id)`` HASH of the schema columns: strings as UTF-8,
  ``embedding`` as little-endian float32 bytes, timestamps as integer µs,
  bools ``1``/``0``, ``source_ids`` as a JSON list; null fields are omitted.
- ``recency(ns)`` ZSET id -> last access µs (also the namespace's id list),
  ``frequency(ns)`` ZSET id -> access count, ``version(ns)`` a counter bumped
  by every put/delete/forget (never by touch) so in-process search caches in
  any process can tell when to reload.
- ``directory()`` HASH id -> namespace and ``namespaces()`` SET, global.

Every multi-key change runs in MULTI/EXEC (or a Lua script), batched so a
large put costs a few round trips. Redis errors never leak: they surface as
`TierUnavailable` naming the URL.

This module is the write path (put, delete, forget, touch). The state and
the record reads are in hot_reads.py, the lifecycle's reads in
hot_snapshot.py, the record codec in hot_codec.py, the Redis plumbing
(errors, `BATCH`, `Later`) in hot_redis.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from tiermem.ids import to_us
from tiermem.model import KINDS
from tiermem.tiers import hot_codec as codec
from tiermem.tiers import hot_redis, resp
from tiermem.tiers.hot_redis import Later, as_strs, chunks, guarded, redis_errors
from tiermem.tiers.hot_snapshot import STATS_SAMPLE, HotSnapshotReads, Light

__all__ = ["STATS_SAMPLE", "UNINDEX_COMMANDS", "HotTier", "Light"]

UNINDEX_COMMANDS = len(KINDS) + 4  # commands `_unindex` queues per namespace


class HotTier(HotSnapshotReads):
    """L1 on a Redis client created by the caller (decode_responses=False).

    `url` is only used in error messages. The client is not closed here: the
    caller owns it. Implements `base.Tier`.
    """

    # -- writes ---------------------------------------------------------------

    @guarded
    def put(self, table: pa.Table) -> None:
        """Upsert rows (whole-hash replace); one MULTI/EXEC per `BATCH` rows."""
        for start in range(0, table.num_rows, hot_redis.BATCH):
            self._put_batch(table.slice(start, hot_redis.BATCH), fresh=False)

    @guarded
    def add_new(self, table: pa.Table) -> dict[tuple[str, str], int]:
        """Write rows of ids not stored here yet (just minted by add); returns how
        many memories each written (namespace, kind) holds here after the write.

        Fresh ids skip the per-record DEL that makes an upsert replace the whole
        hash (a wrong promise would leave stale fields, e.g. a cleared expiry,
        behind). The counts come back in the write's own MULTI/EXEC, so a
        capacity check after an add costs no round trip of its own.
        """
        counts: dict[tuple[str, str], int] = {}
        for start in range(0, table.num_rows, hot_redis.BATCH):
            counts.update(self._put_batch(table.slice(start, hot_redis.BATCH), fresh=True))
        return counts

    def _put_batch(self, table: pa.Table, *, fresh: bool) -> dict[tuple[str, str], int]:
        """One MULTI/EXEC of rows; with `fresh`, no DELs and the (namespace, kind)
        counts after it."""
        cols = codec.encode_columns(table)
        ids, nss = cols["id"], cols["namespace"]
        keys = [self.keys.record(ns, id_) for id_, ns in zip(ids, nss, strict=True)]
        hsets = codec.hset_commands(keys, table, cols)
        if fresh:
            commands: list[resp.Command] = hsets
        else:  # DEL then HSET per record, in row order (a repeated id keeps its last row)
            commands = [c for k, h in zip(keys, hsets, strict=True) for c in (("DEL", k), h)]
        nss_written = self._index(commands, cols)
        groups = list(dict.fromkeys(zip(nss, cols["kind"], strict=True))) if fresh else []
        commands += [("ZCARD", self.keys.kind_index(ns, kind)) for ns, kind in groups]
        replies = resp.transaction(self.client, commands)
        self._search.changed(nss_written)
        return dict(zip(groups, replies[len(replies) - len(groups) :], strict=True))

    def _index(self, commands: list[resp.Command], cols: dict[str, list[Any]]) -> list[str]:
        """Append the index updates of a put's rows; returns their namespaces."""
        ids, nss = cols["id"], cols["namespace"]
        recency: dict[str, list[Any]] = {}  # ns -> ZADD args (score, member, ...)
        freq: dict[str, list[Any]] = {}
        by_kind: dict[tuple[str, str], list[Any]] = {}
        stats = (cols["kind"], cols["last_accessed_at"], cols["access_count"], cols["tiered_at"])
        for id_, ns, kind, last, acc, tiered in zip(ids, nss, *stats, strict=True):
            recency.setdefault(ns, []).extend((last, id_))
            freq.setdefault(ns, []).extend((acc, id_))
            by_kind.setdefault((ns, kind), []).extend((tiered, id_))
        directory = [x for pair in zip(ids, nss, strict=True) for x in pair]
        commands.append(("HSET", self.keys.directory(), *directory))
        for (ns, kind), members in by_kind.items():  # one ZADD per (namespace, kind)
            commands.append(("ZADD", self.keys.kind_index(ns, kind), *members))
        for ns in recency:
            commands.append(("ZADD", self.keys.recency(ns), *recency[ns]))
            commands.append(("ZADD", self.keys.frequency(ns), *freq[ns]))
            commands.append(("INCR", self.keys.version(ns)))
        commands.append(("SADD", self.keys.namespaces(), *recency))  # one for all namespaces
        return list(recency)

    @guarded
    def delete(self, ids: Sequence[str], namespaces: Sequence[str] | None = None) -> int:
        """Remove these ids; returns how many were present.

        `namespaces` (each id's, when the caller just read the rows: a move)
        save the directory lookup, as in `touch`.
        """
        where = self._where(ids, namespaces)
        return sum(self._delete_at(dict(chunk)) for chunk in chunks(where))

    def _delete_at(self, found: dict[str, str]) -> int:
        """Remove id -> namespace records and their index and directory entries in one
        MULTI/EXEC, bumping each namespace's version; returns records removed."""
        commands, by_ns = self._delete_commands(found)
        if not commands:
            return 0
        return self._deleted(by_ns, resp.transaction(self.client, commands))

    def _delete_commands(self, found: dict[str, str]) -> tuple[list[resp.Command], list[str]]:
        """The commands of `_delete_at`, and the namespaces they touch."""
        by_ns: dict[str, list[str]] = {}
        for id_, ns in found.items():
            by_ns.setdefault(ns, []).append(id_)
        commands: list[resp.Command] = []
        for ns, members in by_ns.items():
            commands.append(("DEL", *(self.keys.record(ns, i) for i in members)))
            commands += self._unindex(ns, members)
        return commands, list(by_ns)

    def _deleted(self, namespaces: list[str], replies: list[Any]) -> int:
        """Records removed, from a delete transaction's EXEC replies (each namespace
        queued 1 + UNINDEX_COMMANDS, the first its DEL); invalidates the caches."""
        self._search.changed(namespaces)
        return int(sum(replies[:: 1 + UNINDEX_COMMANDS]))

    def delete_later(self, ids: Sequence[str], namespaces: Sequence[str]) -> Later[int]:
        """`delete(ids, namespaces)`, sent now (a MULTI/EXEC per `BATCH` ids); `wait`
        for the count removed. Until then Redis deletes while the caller works."""
        where = self._where(ids, namespaces)
        sent: list[tuple[resp.Pending, list[str]]] = []
        try:
            for chunk in chunks(where):
                commands, nss = self._delete_commands(dict(chunk))
                packed = resp.pack_transaction(commands)
                with redis_errors(self.url):
                    sent.append((resp.Pending(self.client, packed, len(commands) + 2), nss))
        except BaseException:
            for p, _ in sent:
                p.cancel()
            raise

        def removed(replies: list[list[Any]]) -> int:
            done = zip(sent, replies, strict=True)
            return sum(self._deleted(nss, resp.executed(r)) for (_, nss), r in done)

        return Later(self.url, [p for p, _ in sent], removed)

    def _unindex(self, ns: str, members: Sequence[str]) -> list[resp.Command]:
        """Commands removing `members` from ns's indexes and the directory."""
        return [
            *(("ZREM", self.keys.kind_index(ns, kind), *members) for kind in KINDS),
            ("ZREM", self.keys.recency(ns), *members),
            ("ZREM", self.keys.frequency(ns), *members),
            ("HDEL", self.keys.directory(), *members),
            ("INCR", self.keys.version(ns)),
        ]

    @guarded
    def forget(self, namespace: str) -> int:
        """Remove every row of `namespace`, `BATCH` ids per MULTI/EXEC.

        The version key is kept (and bumped), not deleted: a recreated counter
        would restart at 1 and could match a stale cache elsewhere.
        """
        removed = 0
        rec = self.keys.recency(namespace)
        while members := as_strs(self.client.zrange(rec, 0, hot_redis.BATCH - 1)):
            records = ("DEL", *(self.keys.record(namespace, i) for i in members))
            replies = resp.transaction(self.client, [records, *self._unindex(namespace, members)])
            removed += replies[0]
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(rec, self.keys.frequency(namespace))
        pipe.delete(*(self.keys.kind_index(namespace, kind) for kind in KINDS))
        pipe.srem(self.keys.namespaces(), namespace)
        pipe.incr(self.keys.version(namespace))
        pipe.execute()
        self._search.changed([namespace])
        self._search.drop(namespace)
        return removed

    @guarded
    def touch(
        self, ids: Sequence[str], at: datetime, namespaces: Sequence[str] | None = None
    ) -> None:
        """Record one access of each id held here (atomic per id; version untouched).

        `namespaces` (each id's, when the caller knows them) save the directory
        lookup: the script skips a record that is not there, as a lookup would.
        """
        self.touch_later(ids, at, namespaces).wait()

    @guarded
    def touch_later(
        self, ids: Sequence[str], at: datetime, namespaces: Sequence[str] | None = None
    ) -> Later[None]:
        """`touch`, sent to Redis but not awaited: its `wait` raises what `touch` would.
        Wait (or cancel) in a ``finally``: until then the replies hold a pooled
        connection. A search builds its hits meanwhile (`Reads.search`)."""
        us = to_us(at)
        known = None if namespaces is None else dict(zip(ids, namespaces, strict=True))
        sent: list[resp.Pending | resp.ScriptsSent] = []
        try:
            for chunk in chunks(list(ids)):
                where = self._locate(chunk) if known is None else known
                calls = [
                    (
                        [self.keys.record(ns, id_), self.keys.recency(ns), self.keys.frequency(ns)],
                        [id_, us, codec.HITS_KEPT],
                    )
                    for id_ in chunk  # a repeated id is a repeated access
                    if (ns := where.get(id_)) is not None
                ]
                sent.append(resp.ScriptsSent(self.client, self._touch, calls))
        except BaseException:
            Later(self.url, sent, _nothing).cancel()
            raise
        return Later(self.url, sent, _nothing)


def _nothing(replies: list[list[Any]]) -> None:
    """A `Later`'s finish for work whose replies say nothing (checked for errors)."""
