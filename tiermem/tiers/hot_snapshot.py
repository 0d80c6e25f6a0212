"""What the lifecycle reads from L1 (`lifecycle/snapshot.py`): no rows.

A namespace's light columns (stats, hits, text and metadata lengths: no
text, no vector) or, for the idle and age rules only, its decide columns,
by a Lua call per `BATCH` records streamed across namespaces (`lights`;
fields and decoding in hot_codec.py); the kinds a namespace holds; access
stats from the two ZSETs; and the tier's count and estimated bytes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

from tiermem.model import KINDS, TierStats
from tiermem.tiers import hot_codec as codec
from tiermem.tiers import resp
from tiermem.tiers.hot_reads import HotReads
from tiermem.tiers.hot_redis import as_str, as_strs, chunks, guarded, redis_errors

STATS_SAMPLE = 4  # records sampled per namespace (at most 16 namespaces) by stats()

Light = tuple[str, dict[str, list[Any]], list[int] | None, dict[str, list[int]]]
"""A namespace, its LIGHT columns, text + metadata bytes, id -> recent hits (`light`);
or, read for a decision only, its DECIDE columns, None and no hits (`lights`)."""


class HotSnapshotReads(HotReads):
    """The lifecycle's reads of L1, over `HotReads`' state; `HotTier` is the tier."""

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
                for chunk in chunks(ids[ns])
            ]
            replies = resp.stream(self.client, self._light, calls)
            for ns in namespaces:
                parts = [next(replies) for _ in chunks(ids[ns])]
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
    def access_stats(self, namespace: str) -> dict[str, tuple[int, int]]:
        """id -> (last access µs, access count), read from the two ZSETs only."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrange(self.keys.recency(namespace), 0, -1, withscores=True)
        pipe.zrange(self.keys.frequency(namespace), 0, -1, withscores=True)
        recency, freq = pipe.execute()
        counts = {as_str(m): int(s) for m, s in freq}
        return {as_str(m): (int(s), counts.get(as_str(m), 0)) for m, s in recency}

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
