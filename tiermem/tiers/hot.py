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
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import redis

from tiermem.filters import Filter
from tiermem.ids import to_us
from tiermem.model import KINDS, TierName, TierStats
from tiermem.tiers import hot_codec as codec
from tiermem.tiers import resp
from tiermem.tiers.found import Found
from tiermem.tiers.hot_cache import CacheMode, SearchCache
from tiermem.tiers.hot_redis import Later, as_str, as_strs, guarded, redis_errors
from tiermem.tiers.keys import Keys

BATCH = 1000  # records per MULTI/EXEC or pipelined read
UNINDEX_COMMANDS = len(KINDS) + 4  # commands `_unindex` queues per namespace
STATS_SAMPLE = 4  # records sampled per namespace (at most 16 namespaces) by stats()

Light = tuple[str, dict[str, list[Any]], list[int] | None, dict[str, list[int]]]
"""A namespace, its LIGHT columns, text + metadata bytes, id -> recent hits (`light`);
or, read for a decision only, its DECIDE columns, None and no hits (`lights`)."""


def _chunks(seq: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(seq), BATCH):
        yield seq[i : i + BATCH]


class HotTier:
    """L1 on a Redis client created by the caller (decode_responses=False).

    `url` is only used in error messages. The client is not closed here: the
    caller owns it.
    """

    name: TierName = "l1"

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        dim: int,
        url: str,
        cache: CacheMode = "tracking",
    ) -> None:
        self.client = client
        self.keys = keys
        self.dim = dim
        self.url = url
        self._search = SearchCache(client, keys, self._load, cache)
        self._touch = client.register_script(codec.TOUCH_LUA)
        self._light = client.register_script(codec.LIGHT_LUA)

    # -- writes ---------------------------------------------------------------

    @guarded
    def put(self, table: pa.Table, *, new: bool = False) -> None:
        """Upsert rows (whole-hash replace); one MULTI/EXEC per `BATCH` rows.

        `new=True` promises that no id in `table` is stored here yet (fresh
        ids from add): the per-record DEL that makes an upsert replace the
        whole hash is then skipped. Wrong promises leave stale fields (e.g. a
        cleared expiry) behind, so only pass it for ids just minted.
        """
        for start in range(0, table.num_rows, BATCH):
            self._put_batch(table.slice(start, BATCH), new)

    def _put_batch(self, table: pa.Table, new: bool = False) -> None:
        cols = codec.encode_columns(table)
        ids, nss = cols["id"], cols["namespace"]
        keys = [self.keys.record(ns, id_) for id_, ns in zip(ids, nss, strict=True)]
        hsets = codec.hset_commands(keys, table, cols)
        if new:
            commands: list[resp.Command] = hsets
        else:  # DEL then HSET per record, in row order (a repeated id keeps its last row)
            commands = [c for k, h in zip(keys, hsets, strict=True) for c in (("DEL", k), h)]
        nss_written = self._index(commands, cols)
        resp.transaction(self.client, commands)
        self._search.changed(nss_written)

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
        return sum(self._delete_at(dict(where[i : i + BATCH])) for i in range(0, len(where), BATCH))

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
            for start in range(0, len(where), BATCH):
                commands, nss = self._delete_commands(dict(where[start : start + BATCH]))
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
        while members := as_strs(self.client.zrange(rec, 0, BATCH - 1)):
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
        us = to_us(at)
        known = None if namespaces is None else dict(zip(ids, namespaces, strict=True))
        for chunk in _chunks(list(ids)):
            where = self._locate(chunk) if known is None else known
            calls = [
                (
                    [self.keys.record(ns, id_), self.keys.recency(ns), self.keys.frequency(ns)],
                    [id_, us, codec.HITS_KEPT],
                )
                for id_ in chunk  # a repeated id is a repeated access
                if (ns := where.get(id_)) is not None
            ]
            resp.scripts(self.client, self._touch, calls)

    # -- reads ----------------------------------------------------------------

    def _locate(self, ids: Sequence[str]) -> dict[str, str]:
        """id -> namespace for the ids in the directory (at most `BATCH` ids)."""
        if not ids:
            return {}
        found = resp.pipeline(self.client, [("HMGET", self.keys.directory(), *ids)])[0]
        return {i: as_str(ns) for i, ns in zip(ids, found, strict=True) if ns is not None}

    def _fetch(self, pairs: Sequence[tuple[str, str]]) -> pa.Table:
        """Rows for (id, namespace) pairs, pipelined; vanished records skipped."""
        rows: list[list[bytes | None]] = []
        for start in range(0, len(pairs), BATCH):
            chunk = pairs[start : start + BATCH]
            packed = codec.fetch_packed([self.keys.record(ns, id_) for id_, ns in chunk])
            rows.extend(resp.pipeline_packed(self.client, packed, len(chunk)))
        return codec.decode_rows(self.dim, rows)

    def light(self, namespace: str) -> tuple[dict[str, list[Any]], list[int], dict[str, list[int]]]:
        """The lifecycle's view of every record of `namespace`: no text, no vector.

        (LIGHT columns, text + metadata bytes, id -> recent hits): see
        `hot_codec.decode_light`. One script call per `BATCH` records.
        """
        _, cols, sizes, hits = next(self.lights([namespace]))
        assert sizes is not None  # a full read
        return cols, sizes, hits

    def lights(self, namespaces: Sequence[str], decide: Collection[str] = ()) -> Iterator[Light]:
        """`light` of each namespace, as (namespace, *light), in order; of those in
        `decide`, only the `codec.DECIDE` columns, with no sizes (None) or hits.

        The script calls of all namespaces are streamed (`resp.stream`): Redis
        reads the next records while the caller plans over these.
        """
        with redis_errors(self.url):
            ids = self._ids_of(namespaces)
            calls = [
                (
                    [self.keys.record(ns, i) for i in chunk],
                    codec.DECIDE_ARGS if ns in decide else codec.LIGHT_ARGS,
                )
                for ns in namespaces
                for chunk in _chunks(ids[ns])
            ]
            replies = resp.stream(self.client, self._light, calls)
            for ns in namespaces:
                parts = [next(replies) for _ in _chunks(ids[ns])]
                records = [r for part in parts for r in part]  # a part: one script call's records
                if ns in decide:
                    yield ns, codec.decode_decide(records), None, {}
                else:
                    yield (ns, *codec.decode_light(records))

    @guarded
    def kinds(self, namespaces: Sequence[str]) -> dict[str, set[str]]:
        """The kinds each namespace holds here (by its kind indexes), in one round trip."""
        commands = [("ZCARD", self.keys.kind_index(ns, k)) for ns in namespaces for k in KINDS]
        counts = iter(resp.pipeline(self.client, commands))
        return {ns: {k for k in KINDS if next(counts)} for ns in namespaces}

    def _ids_of(self, namespaces: Sequence[str]) -> dict[str, list[str]]:
        """Every id of each namespace (`ids`), in one round trip."""
        commands = [("ZRANGE", self.keys.recency(ns), 0, -1) for ns in namespaces]
        replies = resp.pipeline(self.client, commands)
        return {ns: as_strs(r) for ns, r in zip(namespaces, replies, strict=True)}

    @guarded
    def locate(self, ids: Sequence[str]) -> dict[str, str]:
        """id -> namespace of the ids held here (directory lookups only)."""
        out: dict[str, str] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            out.update(self._locate(chunk))
        return out

    def _where(self, ids: Sequence[str], namespaces: Sequence[str] | None) -> list[tuple[str, str]]:
        """(id, namespace) of each distinct id: as given (a caller that just read or
        planned the rows knows them; an id not in its given namespace is then
        simply not found), else from the directory (ids not held are left out)."""
        if namespaces is not None:
            return list(dict(zip(ids, namespaces, strict=True)).items())
        return list(self.locate(ids).items())

    @guarded
    def get(self, ids: Sequence[str], namespaces: Sequence[str] | None = None) -> pa.Table:
        """The rows of the ids held here, with current access stats (`namespaces`:
        as in `_where`)."""
        return self._fetch(self._where(ids, namespaces))

    def fetch_later(
        self, ids: Sequence[str], namespaces: Sequence[str] | None = None
    ) -> Later[pa.Table]:
        """`get(ids, namespaces)`, sent now; `wait` for the rows (until then Redis
        reads while the caller works). Without `namespaces` the directory lookup
        is made first, and waited for."""
        with redis_errors(self.url):
            pairs = self._where(ids, namespaces)
            sent: list[resp.Pending] = []
            try:
                for start in range(0, len(pairs), BATCH):
                    keys = [self.keys.record(ns, id_) for id_, ns in pairs[start : start + BATCH]]
                    sent.append(resp.Pending(self.client, codec.fetch_packed(keys), len(keys)))
            except BaseException:
                for p in sent:
                    p.cancel()
                raise
        return Later(
            self.url,
            sent,
            lambda replies: codec.decode_rows(self.dim, [r for part in replies for r in part]),
        )

    @guarded
    def named(self, namespace: str, kind: str, name: str) -> list[str]:
        """Ids of `kind` in `namespace` whose `name` is `name`: the kind's index,
        then one HGET per member (procedures are few; no record is read whole)."""
        ids = as_strs(self.client.zrange(self.keys.kind_index(namespace, kind), 0, -1))
        commands = [("HGET", self.keys.record(namespace, i), "name") for i in ids]
        names = resp.pipeline(self.client, commands)
        return [i for i, n in zip(ids, names, strict=True) if n is not None and n.decode() == name]

    @guarded
    def count(self, namespace: str, kind: str) -> int:
        """How many memories of `kind` the namespace holds here."""
        return int(self.client.zcard(self.keys.kind_index(namespace, kind)))

    @guarded
    def ids(self, namespace: str) -> list[str]:
        """Every id of `namespace`, least recently accessed first."""
        return as_strs(self.client.zrange(self.keys.recency(namespace), 0, -1))

    @guarded
    def access_stats(self, namespace: str) -> dict[str, tuple[int, int]]:
        """id -> (last access µs, access count), read from the two ZSETs only."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrange(self.keys.recency(namespace), 0, -1, withscores=True)
        pipe.zrange(self.keys.frequency(namespace), 0, -1, withscores=True)
        recency, freq = pipe.execute()
        counts = {as_str(m): int(s) for m, s in freq}
        return {as_str(m): (int(s), counts.get(as_str(m), 0)) for m, s in recency}

    def scan(self, namespace: str | None = None) -> Iterator[pa.Table]:
        """Every row (of one namespace, or all), in tables of up to `BATCH` rows.

        Ids are snapshotted per namespace first, so concurrent touches (which
        reorder the recency ZSET) cannot make the scan skip or repeat rows.
        """
        nss = [namespace] if namespace is not None else sorted(self.namespaces())
        for ns in nss:
            ids = self.ids(ns)
            for chunk in _chunks(ids):
                with redis_errors(self.url):
                    table = self._fetch([(i, ns) for i in chunk])
                if table.num_rows:
                    yield table

    @guarded
    def namespaces(self) -> set[str]:
        """Namespaces with at least one row here."""
        members = sorted(as_strs(self.client.smembers(self.keys.namespaces())))
        pipe = self.client.pipeline(transaction=False)
        for ns in members:
            pipe.zcard(self.keys.recency(ns))
        # delete() leaves emptied namespaces in the set; filter them here
        return {ns for ns, n in zip(members, pipe.execute(), strict=True) if n}

    @guarded
    def stats(self) -> TierStats:
        """Count (exact) and bytes (estimated from a small sample of records)."""
        nss = sorted(self.namespaces())
        pipe = self.client.pipeline(transaction=False)
        for ns in nss:
            pipe.zcard(self.keys.recency(ns))
        sizes = dict(zip(nss, pipe.execute(), strict=True))
        count = sum(sizes.values())
        if not count:
            return TierStats(count=0, bytes=0, namespaces=0)
        sampled = sorted(nss, key=lambda ns: -sizes[ns])[:16]
        for ns in sampled:
            pipe.zrange(self.keys.recency(ns), 0, STATS_SAMPLE - 1)
        pairs = [
            (as_str(m), ns) for ns, ms in zip(sampled, pipe.execute(), strict=True) for m in ms
        ]
        for id_, ns in pairs:
            pipe.hgetall(self.keys.record(ns, id_))
        rows = [h for h in pipe.execute() if h]
        avg = sum(len(k) + len(v) for h in rows for k, v in h.items()) / max(len(rows), 1)
        return TierStats(count=count, bytes=int(avg * count), namespaces=len(nss))

    # -- search ---------------------------------------------------------------

    @guarded
    def search(self, namespace: str, vector: np.ndarray, k: int, flt: Filter) -> pa.Table:
        """Exact top-k cosine over `namespace` (see `hot_cache` for how copies stay current)."""
        return self._search.search(namespace, vector, k, flt)

    @guarded
    def find(self, namespace: str, vector: np.ndarray, k: int, flt: Filter) -> Found:
        """The same top-k as `search`, for the read path (`tiers.found`)."""
        return self._search.find(namespace, vector, k, flt)

    def _load(self, namespace: str) -> pa.Table:
        return self._fetch([(i, namespace) for i in self.ids(namespace)])

    def close(self) -> None:
        """Drop the search caches and stop tracking (the client belongs to the caller)."""
        self._search.close()
