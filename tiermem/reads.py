"""The read path of the engine: get, get_many, search, scan."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from tiermem import inputs, retrieval, schema
from tiermem.core import EngineCore
from tiermem.errors import NotFound, ValidationError
from tiermem.fields import check_namespace
from tiermem.filters import Filter, parse_where
from tiermem.lifecycle import snapshot
from tiermem.model import (
    TIERS,
    Hit,
    Memory,
    TierName,
)


class Reads(EngineCore):
    """get, get_many, search (tiers merged, L3 when needed), scan."""

    def get(self, id: str) -> Memory:
        """One memory by id (counts as an access); raises NotFound."""
        found = self.get_many([id])
        if id not in found:
            raise NotFound(f"no memory with id {id!r}")
        return found[id]

    def get_many(self, ids: Iterable[str]) -> dict[str, Memory]:
        """Memories by id (missing ids absent); each counts as an access."""
        ids = list(ids)
        out: dict[str, Memory] = {}
        for tier, table in self._find(ids):
            out.update((m.id, m) for m in schema.to_memories(table, tier))
        now = self.clock()
        out = {k: m for k, m in out.items() if m.expires_at is None or m.expires_at > now}
        self._misses += len(set(ids)) - len(out)
        read = self._accessed(list(out.values()), now)
        self._promote_on_read(read, now)
        return {m.id: m for m in read}

    def search(
        self,
        query: str | Sequence[float] | np.ndarray,
        *,
        namespace: str,
        k: int = 10,
        kinds: Iterable[str] | None = None,
        where: dict[str, Any] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        deep: bool = False,
        score: str = "relevance",
        include_superseded: bool = False,
    ) -> list[Hit]:
        """The k memories of `namespace` most similar to `query`, best first."""
        check_namespace(namespace)
        inputs.k(k)
        if score not in ("relevance", "blended"):
            raise ValidationError("must be 'relevance' or 'blended'", field="score")
        now = self.clock()
        flt = Filter(
            kinds=inputs.kinds(kinds),
            where=parse_where(where),
            since=inputs.aware(since, "since"),
            until=inputs.aware(until, "until"),
            now=now,
            include_superseded=include_superseded,
        )
        vec = inputs.query_vector(query, self.embedder, self.dim)
        fetch = k if score == "relevance" else 3 * k
        tiers = self.backends.tiers
        hot_warm: tuple[TierName, ...] = ("l1", "l2")
        results = [tiers[t].find(namespace, vec, fetch, flt) for t in hot_warm]
        found = retrieval.rank(results)
        # L3 too unless hot+warm already hold k strong hits: the k-th score, not the
        # best, decides, so a namespace that is mostly cold is not cut off (LoCoMo).
        if deep or len(found) < fetch or found[k - 1].score < self.config.search.deep_below:
            results.append(tiers["l3"].find(namespace, vec, fetch, flt))
            found = retrieval.rank(results)
        if score == "relevance":
            touched = self._start_access(found[:k], now, namespace)
            try:  # Redis records L1's accesses while the hits are built
                return retrieval.hits(found[:k], accessed_at=now)
            finally:
                touched.wait()
        hits = retrieval.blended(retrieval.hits(found), now)[:k]
        fresh = {m.id: m for m in self._accessed([h.memory for h in hits], now)}
        return [h.model_copy(update={"memory": fresh[h.memory.id]}) for h in hits]

    def _promote_on_read(self, read: Sequence[Memory], now: datetime) -> None:
        """Read-through promotion (a kind's ``promote.on_read``) of memories just got
        from L2; they are returned as read (their `tier` is where they were found).

        Gets only: a search's hits count as accesses (the promote job moves what
        they earn) but move nothing then. Moving them at the search made each
        search of a 20k-memory L2 namespace move and evict ~10 memories: p50
        30 ms against 1.6 ms (`benchmarks/results/perf-log.md`, sixth pass).
        """
        if self.read_only or not self.policy.promotes_on_read:
            return
        warm = [m for m in read if m.tier == "l2"]
        if warm:
            with self._mutex:
                self.lifecycle.promote_on_read(snapshot.read_stats(warm, self.hits), now)

    def scan(
        self,
        namespace: str | None = None,
        kinds: Iterable[str] | None = None,
        tiers: Iterable[str] | None = None,
    ) -> Iterator[Memory]:
        """Every memory (of a namespace, kinds, tiers); not counted as accesses."""
        if namespace is not None:
            check_namespace(namespace)
        wanted = inputs.kinds(kinds)
        names = list(TIERS) if tiers is None else [inputs.tier(t) for t in tiers]
        for name in names:
            for table in self.backends.tiers[name].scan(namespace):
                for m in schema.to_memories(table, name):
                    if wanted is None or m.kind in wanted:
                        yield m
