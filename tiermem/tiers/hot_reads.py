"""The state and record reads of L1 (`HotTier` in hot.py adds the writes).

`HotReads` owns what an L1 tier holds: the Redis client (the caller's), the
key names, the search cache (hot_cache.py) and the Lua scripts. Reads: rows
by id (the directory says where, unless the caller knows), pipelined, or
sent now and finished later (`Later`); ids, names and counts from the
indexes; scans; and search over the in-process copy of a namespace. See
hot.py for the layout; the lifecycle's reads are in hot_snapshot.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import redis

from tiermem.filters import Filter
from tiermem.model import TierName
from tiermem.tiers import hot_codec as codec
from tiermem.tiers import resp
from tiermem.tiers.found import Found
from tiermem.tiers.hot_cache import CacheMode, SearchCache
from tiermem.tiers.hot_redis import Later, as_str, as_strs, chunks, guarded, redis_errors
from tiermem.tiers.keys import Keys


class HotReads:
    """State and record reads of L1 (see `HotTier` for the constructor's arguments)."""

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
        for chunk in chunks(pairs):
            packed = codec.fetch_packed([self.keys.record(ns, id_) for id_, ns in chunk])
            rows.extend(resp.pipeline_packed(self.client, packed, len(chunk)))
        return codec.decode_rows(self.dim, rows)

    @guarded
    def locate(self, ids: Sequence[str]) -> dict[str, str]:
        """id -> namespace of the ids held here (directory lookups only)."""
        out: dict[str, str] = {}
        for chunk in chunks(list(dict.fromkeys(ids))):
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
                for chunk in chunks(pairs):
                    keys = [self.keys.record(ns, id_) for id_, ns in chunk]
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

    def scan(self, namespace: str | None = None) -> Iterator[pa.Table]:
        """Every row (of one namespace, or all), in tables of up to `BATCH` rows.

        Ids are snapshotted per namespace first, so concurrent touches (which
        reorder the recency ZSET) cannot make the scan skip or repeat rows.
        """
        nss = [namespace] if namespace is not None else sorted(self.namespaces())
        for ns in nss:
            ids = self.ids(ns)
            for chunk in chunks(ids):
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
