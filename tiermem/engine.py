"""The façade: one `Engine` per data dir composes the tiers, moves and SQL.

The engine validates at the edge, picks the tier, and delegates: storage to
the tiers (`tiers/`), moves to the one crash-safe executor (`moves.py`),
ranking to `retrieval.py`, SQL to `sql.py`. It holds no storage logic.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa

from tiermem import records, retrieval, schema
from tiermem.backends import Backends, open_backends
from tiermem.config import Config, check_format
from tiermem.embed import Embedder, default_embedder
from tiermem.errors import ConfigError, NotFound, TierMemError, ValidationError
from tiermem.filters import Filter, parse_where
from tiermem.ids import Clock, utcnow
from tiermem.lock import WriterLock
from tiermem.model import (
    KINDS,
    TIERS,
    BatchResult,
    Hit,
    Memory,
    MemoryIn,
    Stats,
    TierName,
    check_namespace,
)
from tiermem.moves import Mover
from tiermem.resources import resolve_policy
from tiermem.sql import SqlViews

MAX_K = 1_000


class Engine:
    """A tiered memory store on one data dir. Use `tiermem.open()` to make one.

    >>> import tempfile, tiermem
    >>> with tiermem.open(tempfile.mkdtemp(), embedder=tiermem.HashingEmbedder(64),
    ...                   **{"embedding.dim": 64, "l1.url": "redis://127.0.0.1:6379/15"}) as mem:
    ...     m = mem.add("Alice prefers green tea", namespace="user:alice")
    ...     mem.search("what tea does alice like", namespace="user:alice")[0].memory.id == m.id
    True
    """

    def __init__(
        self,
        path: str | Path,
        config: Config,
        *,
        clock: Clock | None = None,
        embedder: Embedder | None = None,
        policy: str | None = None,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.config = config
        self.read_only = read_only
        self.policy = resolve_policy(policy or config.policy)
        self.clock: Clock = clock or utcnow
        self._mutex = threading.RLock()
        self._hits: Counter[TierName] = Counter()
        self._misses = 0
        if not read_only:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise ConfigError(f"{self.path} does not exist; nothing to open read-only")
        self._lock = None if read_only else WriterLock(self.path)
        try:
            self.format = check_format(self.path, config, create=not read_only)
            self._embedder = self._check_embedder(embedder)
            self._b: Backends | None = open_backends(self.path, config, self.format, read_only)
            self.mover = Mover(self._b.tiers, self.path / "moves", config.moves.batch, self.clock)
            if not read_only:
                self.mover.recover()
            self._sql = SqlViews(self._b, self.format.dim)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    # -- lifecycle of the engine itself -------------------------------------------------

    def close(self) -> None:
        """Persist derived state, stop the embedded Redis (if ours), release the lock."""
        with self._mutex:
            if self._b is None:
                return
            b, self._b = self._b, None
            try:
                self._sql.close()
                b.close()
            finally:
                if self._lock is not None:
                    self._lock.release()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def backends(self) -> Backends:
        if self._b is None:
            raise TierMemError("this Engine is closed; open the store again")
        return self._b

    @property
    def dim(self) -> int:
        return self.format.dim

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:  # loaded on first use: the real model takes seconds
            self._embedder = default_embedder(self.config.embedding.model, self.dim)
        return self._embedder

    def _check_embedder(self, embedder: Embedder | None) -> Embedder | None:
        if embedder is not None and embedder.dim != self.format.dim:
            raise ConfigError(
                f"the embedder makes {embedder.dim}-d vectors but {self.path} stores "
                f"{self.format.dim}-d ones"
            )
        return embedder

    def _writable(self) -> Backends:
        if self.read_only:
            raise TierMemError(f"{self.path} is open read-only; open it without read_only to write")
        return self.backends

    # -- writing ---------------------------------------------------------------------------

    def add(
        self,
        text: str,
        *,
        namespace: str,
        kind: str = "episodic",
        metadata: dict[str, Any] | None = None,
        importance: float = 0.5,
        embedding: Any = None,
        ttl: Any = None,
        pinned: bool = False,
        created_at: datetime | None = None,
        name: str | None = None,
        supersedes: str | None = None,
    ) -> Memory:
        """Add one memory; returns it as stored. Raises ValidationError on bad input."""
        item = MemoryIn.parse(
            {
                "text": text,
                "namespace": namespace,
                "kind": kind,
                "metadata": metadata,
                "importance": importance,
                "embedding": embedding,
                "ttl": ttl,
                "pinned": pinned,
                "created_at": created_at,
                "name": name,
                "supersedes": supersedes,
            }
        )
        if item.supersedes is not None:
            self._check_supersedes(item)
        table = self._write([item])
        memory = schema.to_memories(table, "l1")[0]
        if item.supersedes is not None:
            self._supersede(item.supersedes, memory.id)
        return memory

    def add_many(
        self, items: Iterable[dict[str, Any] | MemoryIn], *, namespace: str | None = None
    ) -> BatchResult:
        """Add many memories; valid items are written even when others fail."""
        items = list(items)
        ids: list[str | None] = [None] * len(items)
        errors: dict[int, TierMemError] = {}
        good: list[tuple[int, MemoryIn]] = []
        for i, raw in enumerate(items):
            try:
                item = MemoryIn.parse(raw, namespace=namespace)
                if item.supersedes is not None:
                    raise ValidationError("use add() for supersedes", field="supersedes")
                if item.embedding is not None:
                    records.check_vector(item.embedding, self.dim)
                good.append((i, item))
            except TierMemError as exc:
                errors[i] = exc
        if good:
            table = self._write([item for _, item in good])
            for (i, _), id_ in zip(good, table.column("id").to_pylist(), strict=True):
                ids[i] = id_
        return BatchResult(ids=ids, errors=errors)

    def _write(self, items: Sequence[MemoryIn]) -> pa.Table:
        b = self._writable()
        vecs = records.embed_items(items, self.embedder, self.dim)
        table = records.new_rows(items, vecs, self.clock(), self.dim)
        with self._mutex:
            b.l1.put(table)
        return table

    def update(
        self,
        id: str,
        *,
        text: str | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float | None = None,
        pinned: bool | None = None,
    ) -> Memory:
        """Change a memory in place (in its tier); content edits make a new version."""
        with self._mutex:
            old = self._find_one(id)
            changes: dict[str, Any] = {}
            if text is not None or metadata is not None or importance is not None:
                item = MemoryIn.parse(
                    {
                        "text": old.text if text is None else text,
                        "namespace": old.namespace,
                        "metadata": old.metadata if metadata is None else metadata,
                        "importance": old.importance if importance is None else importance,
                    }
                )
                changes = {
                    "text": item.text,
                    "metadata": item.metadata,
                    "importance": item.importance,
                }
                if text is not None and text != old.text:
                    changes["embedding"] = records.embed_items([item], self.embedder, self.dim)[0]
            if pinned is not None:
                changes["pinned"] = bool(pinned)
            bump = any(k != "pinned" for k in changes)
            new = records.edited(old, changes, self.clock(), bump=bump)
            self._put(old.tier, [new])
            return new

    def _put(self, tier: TierName, memories: Sequence[Memory]) -> None:
        self._writable().tiers[tier].put(schema.from_memories(self.dim, memories))

    def delete(self, id: str) -> bool:
        """Delete one memory; False if it did not exist."""
        return self.delete_many([id]) == 1

    def delete_many(self, ids: Iterable[str]) -> int:
        """Delete memories by id; returns how many existed."""
        b = self._writable()
        with self._mutex:
            return sum(
                b.tiers[tier].delete(t.column("id").to_pylist()) for tier, t in self._find(ids)
            )

    def forget(self, *, namespace: str) -> int:
        """Erase a whole namespace from every tier; returns how many memories it had."""
        check_namespace(namespace)
        b = self._writable()
        with self._mutex:
            return sum(b.tiers[t].forget(namespace) for t in TIERS)

    def _check_supersedes(self, item: MemoryIn) -> None:
        try:
            old = self._find_one(str(item.supersedes))
        except NotFound:
            raise ValidationError(f"no memory {item.supersedes!r}", field="supersedes") from None
        if old.namespace != item.namespace:
            raise ValidationError("must name a memory of the same namespace", field="supersedes")

    def _supersede(self, old_id: str, new_id: str) -> None:
        with self._mutex:
            old = self._find_one(old_id)
            self._put(
                old.tier, [records.edited(old, {"superseded_by": new_id}, self.clock(), bump=False)]
            )
            self.mover.move(old.tier, "l3", [old_id])

    # -- reading ---------------------------------------------------------------------------

    def _find(self, ids: Iterable[str]) -> list[tuple[TierName, pa.Table]]:
        """Rows of `ids`, looked up hot to cold; each id from its hottest copy."""
        remaining = list(dict.fromkeys(ids))
        found: list[tuple[TierName, pa.Table]] = []
        for name in TIERS:
            if not remaining:
                break
            table = self.backends.tiers[name].get(remaining)
            if table.num_rows:
                found.append((name, table))
                seen = set(table.column("id").to_pylist())
                remaining = [i for i in remaining if i not in seen]
        return found

    def _find_one(self, id: str) -> Memory:
        for tier, table in self._find([id]):
            return schema.to_memories(table, tier)[0]
        raise NotFound(f"no memory with id {id!r}")

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
        return {m.id: m for m in self._accessed(list(out.values()), now)}

    def _accessed(self, memories: list[Memory], now: datetime) -> list[Memory]:
        """Record one access of each memory; returns them with updated stats."""
        if self.read_only or not memories:
            return memories
        by_tier: dict[TierName, list[str]] = {}
        for m in memories:
            by_tier.setdefault(m.tier, []).append(m.id)
        for tier, ids in by_tier.items():
            self.backends.tiers[tier].touch(ids, now)
            self._hits[tier] += len(ids)
        return [
            m.model_copy(update={"last_accessed_at": now, "access_count": m.access_count + 1})
            for m in memories
        ]

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
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise ValidationError(f"must be an integer from 1 to {MAX_K}", field="k")
        if score not in ("relevance", "blended"):
            raise ValidationError("must be 'relevance' or 'blended'", field="score")
        now = self.clock()
        flt = Filter(
            kinds=_kinds(kinds),
            where=parse_where(where),
            since=_aware(since, "since"),
            until=_aware(until, "until"),
            now=now,
            include_superseded=include_superseded,
        )
        vec = self._query_vector(query)
        fetch = k if score == "relevance" else 3 * k
        tiers = self.backends.tiers
        hot_warm: tuple[TierName, ...] = ("l1", "l2")
        results = [(t, tiers[t].search(namespace, vec, fetch, flt)) for t in hot_warm]
        hits = retrieval.merge(results)
        if deep or len(hits) < fetch or hits[0].score < self.config.search.deep_below:
            results.append(("l3", tiers["l3"].search(namespace, vec, fetch, flt)))
            hits = retrieval.merge(results)
        if score == "blended":
            hits = retrieval.blended(hits, now)
        hits = hits[:k]
        fresh = {m.id: m for m in self._accessed([h.memory for h in hits], now)}
        return [h.model_copy(update={"memory": fresh[h.memory.id]}) for h in hits]

    def _query_vector(self, query: str | Sequence[float] | np.ndarray) -> np.ndarray:
        if isinstance(query, str):
            if not query.strip():
                raise ValidationError("must not be empty", field="query")
            item = MemoryIn(text=query, namespace="q")
            vec: np.ndarray = records.embed_items([item], self.embedder, self.dim)[0]
            return vec
        try:
            vec = np.asarray(query, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValidationError("must be a string or a vector", field="query") from None
        if vec.ndim != 1 or not np.isfinite(vec).all():
            raise ValidationError("must be a 1-d vector of finite numbers", field="query")
        return records.check_vector(vec, self.dim, field="query")

    def scan(
        self,
        namespace: str | None = None,
        kinds: Iterable[str] | None = None,
        tiers: Iterable[str] | None = None,
    ) -> Iterator[Memory]:
        """Every memory (of a namespace, kinds, tiers); not counted as accesses."""
        if namespace is not None:
            check_namespace(namespace)
        wanted = _kinds(kinds)
        names = list(TIERS) if tiers is None else [_tier(t) for t in tiers]
        for name in names:
            for table in self.backends.tiers[name].scan(namespace):
                for m in schema.to_memories(table, name):
                    if wanted is None or m.kind in wanted:
                        yield m

    # -- moves -----------------------------------------------------------------------------

    def promote(self, id: str, to: str = "l1") -> Memory:
        """Move a memory to a hotter tier (no-op if already there)."""
        return self._manual_move(id, _tier(to), hotter=True)

    def demote(self, id: str, to: str = "l3") -> Memory:
        """Move a memory to a colder tier (no-op if already there); pins do not stop this."""
        return self._manual_move(id, _tier(to), hotter=False)

    def _manual_move(self, id: str, dst: TierName, *, hotter: bool) -> Memory:
        self._writable()
        with self._mutex:
            src = self._find_one(id).tier
            if src != dst and (TIERS.index(dst) < TIERS.index(src)) != hotter:
                verb = "promote" if hotter else "demote"
                raise ValidationError(f"cannot {verb} from {src} to {dst}", field="to")
            self.mover.move(src, dst, [id])
            return self._find_one(id)

    def pin(self, id: str) -> Memory:
        """Pin a memory: no rule will move it colder."""
        return self.update(id, pinned=True)

    def unpin(self, id: str) -> Memory:
        """Unpin a memory."""
        return self.update(id, pinned=False)

    # -- introspection ---------------------------------------------------------------------

    def stats(self) -> Stats:
        """Sizes per tier, counts per kind, reads served per tier."""
        b = self.backends
        kinds = Counter({k: 0 for k in KINDS})
        for row in self._sql.query(
            "SELECT kind, count(*) AS n FROM memories GROUP BY kind"
        ).to_pylist():
            kinds[row["kind"]] = row["n"]
        return Stats(
            tiers={t: b.tiers[t].stats() for t in TIERS},
            kinds=dict(kinds),
            hits={t: self._hits[t] for t in TIERS},
            misses=self._misses,
        )

    def sql(self, query: str, *, namespace: str | None = None) -> pa.Table:
        """Run one read-only SELECT over the views cold, warm, hot, memories."""
        if namespace is not None:
            check_namespace(namespace)
        return self._sql.query(query, namespace=namespace)


def _kinds(kinds: Iterable[str] | None) -> frozenset[str] | None:
    if kinds is None:
        return None
    wanted = frozenset([kinds] if isinstance(kinds, str) else kinds)
    bad = wanted - set(KINDS)
    if bad:
        raise ValidationError(f"unknown kind(s) {sorted(bad)}; use {list(KINDS)}", field="kinds")
    return wanted


def _tier(name: str) -> TierName:
    for t in TIERS:
        if t == name:
            return t
    raise ValidationError(f"unknown tier {name!r}; use l1, l2 or l3", field="tier")


def _aware(dt: datetime | None, field: str) -> datetime | None:
    if dt is not None and (not isinstance(dt, datetime) or dt.utcoffset() is None):
        raise ValidationError("must be a timezone-aware datetime", field=field)
    return dt
