"""The façade: one `Engine` per data dir composes the tiers, moves and SQL.

The engine validates at the edge, picks the tier, and delegates: storage to
the tiers (`tiers/`), moves to the one crash-safe executor (`moves.py`),
ranking to `retrieval.py`, SQL to `sql.py`. It holds no storage logic.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa

from tiermem import inputs, memtypes, records, retrieval, schema
from tiermem.access import HitLog
from tiermem.backends import Backends, open_backends
from tiermem.check import CheckReport
from tiermem.config import Config, check_format
from tiermem.consolidate import Summarizer
from tiermem.embed import Embedder, default_embedder
from tiermem.errors import ConfigError, NotFound, TierMemError, ValidationError
from tiermem.events import EventLog
from tiermem.filters import Filter, parse_where
from tiermem.ids import Clock, to_us, utcnow
from tiermem.lifecycle import capacity, planners, snapshot
from tiermem.lifecycle.jobs import Lifecycle, Progress
from tiermem.lifecycle.policy import Policy, load_policy
from tiermem.lifecycle.scheduler import Scheduler
from tiermem.lock import WriterLock
from tiermem.model import (
    KINDS,
    TIERS,
    Action,
    BatchResult,
    Hit,
    JobReport,
    Memory,
    MemoryIn,
    Plan,
    Stats,
    TierName,
    check_namespace,
)
from tiermem.moves import Mover
from tiermem.obs.metrics import EngineMetrics
from tiermem.sql import SqlViews


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
        self.policy: Policy = load_policy(policy or config.policy)
        self.clock: Clock = clock or utcnow
        self._mutex = threading.RLock()
        self._hits: Counter[TierName] = Counter()
        self._jobs: Counter[str] = Counter()
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
            self.hits = HitLog(None if read_only else self.path / "hits.arrow")
            self.events = EventLog(self.path / "events", read_only=read_only)
            self.lifecycle = Lifecycle(
                self._b,
                self.mover,
                self.policy,
                self.hits,
                self.events,
                self.dim,
                config.moves.batch,
            )
            self._scheduler: Scheduler | None = None
            self.types = memtypes.MemTypes(self)  # dedupe, versions, rollback
            self._sql = SqlViews(self._b, self.format.dim, events=self.events)
            self.metrics = EngineMetrics(self)  # instruments this instance (obs/metrics.py)
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
            self.stop_scheduler()
            b, self._b = self._b, None
            try:
                if not self.read_only:
                    self.hits.save()
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
        if self.types.handles(item):  # deduplicated kinds, named procedures
            memory = self.types.add(item)
            if item.supersedes is not None:
                self._supersede(item.supersedes, memory.id)
            return memory
        memories, errors = self._write([item])
        if errors:
            raise errors[0]
        memory = memories[0]
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
                vec = item.embedding
                if vec is not None and (vec.shape != (self.dim,) or not vec.any()):
                    records.check_vector(vec, self.dim)  # raises, naming the field
                good.append((i, item))
            except TierMemError as exc:
                errors[i] = exc
        claimed = [(i, item) for i, item in good if self.types.handles(item)]
        good = [(i, item) for i, item in good if not self.types.handles(item)]
        for (i, _), got in zip(
            claimed, self.types.add_many([item for _, item in claimed]), strict=True
        ):
            if isinstance(got, Memory):
                ids[i] = got.id
            else:
                errors[i] = got
        if good:
            written, failed = self._write([item for _, item in good])
            for j, (i, _) in enumerate(good):
                if j in failed:
                    errors[i] = failed[j]
            for (i, _), m in zip(
                [g for j, g in enumerate(good) if j not in failed], written, strict=True
            ):
                ids[i] = m.id
        return BatchResult(ids=ids, errors=errors)

    def _write(
        self, items: Sequence[MemoryIn], *, versions: Sequence[int] | None = None
    ) -> tuple[list[Memory], dict[int, TierMemError]]:
        """Write the items that fit (policy capacity); returns them and errors by index.

        `versions` (one per item) replaces the new rows' version 1 (procedures).
        """
        b = self._writable()
        with self._mutex:
            adm = capacity.admit(items, self.policy, self._count)
            chosen = [self._with_default_ttl(items[i]) for i in adm.admitted]
            if not chosen:
                return [], adm.errors
            vecs = records.embed_items(chosen, self.embedder, self.dim)
            table = records.new_rows(chosen, vecs, self.clock(), self.dim)
            if versions is not None:
                col = pa.array([versions[i] for i in adm.admitted], pa.int64())
                table = table.set_column(table.schema.get_field_index("version"), "version", col)
            places: list[TierName] = [self.policy.for_kind(m.kind).place for m in chosen]
            for tier in dict.fromkeys(places):
                rows = [i for i, p in enumerate(places) if p == tier]
                part = table.take(rows) if len(rows) < len(places) else table
                if tier == "l1":
                    b.l1.put(part, new=True)  # fresh ids: no upsert DEL needed
                else:
                    b.tiers[tier].put(part)
            for group in adm.evict:
                self._evict_now(*group)
        memories = schema.to_memories(table, "l1")
        return [
            m.model_copy(update={"tier": p}) for m, p in zip(memories, places, strict=True)
        ], adm.errors

    def _with_default_ttl(self, item: MemoryIn) -> MemoryIn:
        ttl = self.policy.for_kind(item.kind).ttl
        return item if item.ttl is not None or ttl is None else item.model_copy(update={"ttl": ttl})

    def _count(self, tier: TierName, namespace: str, kind: str) -> int:
        if tier == "l1":
            return self.backends.l1.count(namespace, kind)
        return sum(
            sum(1 for k in t["kind"].to_pylist() if k == kind)
            for t in self.backends.tiers[tier].scan(namespace)
        )

    def _evict_now(self, tier: TierName, namespace: str, kind: str) -> None:
        """Demote the excess of a group that a write took over capacity (on_full: evict)."""
        b, now = self.backends, self.clock()
        if tier == "l1":
            groups = snapshot.hot_groups(b.l1, self.dim, [namespace])
        else:
            groups = [
                g
                for g in snapshot.warm_groups(b.l2, self.dim, self.hits)
                if g.namespace == namespace
            ]
        for group in groups:
            if group.kind == kind:
                actions, _ = planners.demote_group(group, self.policy, now, capacity.EVICT_TO)
                self.lifecycle.apply("evict", actions, now)

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
            rows = self._find(ids)
            found = [(tier, t.column("id").to_pylist()) for tier, t in rows]
            for _, gone in found:
                self.hits.drop(gone)
            n = sum(b.tiers[tier].delete(gone) for tier, gone in found)
            events = [
                Action(id=i, namespace=ns, action="delete", src=tier, reason="deleted by the user")
                for tier, t in rows
                for i, ns in zip(t["id"].to_pylist(), t["namespace"].to_pylist(), strict=True)
            ]
            self._log_user("user", events)
            return n

    def forget(self, *, namespace: str) -> int:
        """Erase a whole namespace from every tier; returns how many memories it had."""
        check_namespace(namespace)
        b = self._writable()
        with self._mutex:
            cold = b.l3.columns(["id"], namespace)
            gone = [i for t in b.l2.scan(namespace) for i in t["id"].to_pylist()]
            gone += cold["id"].to_pylist() if cold is not None else []
            n = sum(b.tiers[t].forget(namespace) for t in TIERS)
            self.hits.drop(gone)  # no trace of the namespace in the hit log ...
            self.hits.save()
            b.l3.checkpoint()  # ... or in L3's persisted access stats
            self.types.forget(namespace)
            reason = f"forget(namespace={namespace!r}): {n} memories"
            # src "all" is not a TierName: built unvalidated, it only feeds the events log.
            event: dict[str, Any] = {"id": "*", "namespace": namespace, "action": "forget"}
            event |= {"src": "all", "dst": None, "reason": reason}
            self._log_user("forget", [Action.model_construct(**event)])
            return n

    def _log_user(self, job: str, actions: list[Action]) -> None:
        """Record a user's deletes (job "user") or forget (job "forget") in the events log."""
        self.events.append(uuid.uuid4().hex[:12], job, self.clock(), actions)

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

    def versions(self, name: str, *, namespace: str) -> list[Memory]:
        """Every version of the procedure `name` in `namespace`, newest first."""
        check_namespace(namespace)
        return self.types.versions(name, namespace)

    def rollback(self, name: str, *, namespace: str, version: int) -> Memory:
        """Make `version` of a procedure current again (as a new, newest version)."""
        check_namespace(namespace)
        self._writable()
        return self.types.rollback(name, namespace, version)

    @property
    def summarizer(self) -> Summarizer:
        """What consolidation summarises clusters with (default: extractive); settable."""
        return self.lifecycle.summarizer

    @summarizer.setter
    def summarizer(self, value: Summarizer) -> None:
        self.lifecycle.summarizer = value

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
        """Record one access of each memory; returns them with updated stats.

        L1 accesses go to Redis (shared, so read-only processes count too);
        L2/L3 state belongs to the writer, so only the writer records those.
        """
        if not memories:
            return memories
        by_tier: dict[TierName, list[str]] = {}
        for m in memories:
            by_tier.setdefault(m.tier, []).append(m.id)
        for tier, ids in by_tier.items():
            self._hits[tier] += len(ids)
            if tier != "l1" and self.read_only:
                continue
            self.backends.tiers[tier].touch(ids, now)
            if tier != "l1":
                self.hits.record(ids, to_us(now))
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
        results = [(t, tiers[t].search(namespace, vec, fetch, flt)) for t in hot_warm]
        hits = retrieval.merge(results)
        # L3 too unless hot+warm already hold k strong hits: the k-th score, not the
        # best, decides, so a namespace that is mostly cold is not cut off (LoCoMo).
        if deep or len(hits) < fetch or hits[k - 1].score < self.config.search.deep_below:
            results.append(("l3", tiers["l3"].search(namespace, vec, fetch, flt)))
            hits = retrieval.merge(results)
        if score == "blended":
            hits = retrieval.blended(hits, now)
        hits = hits[:k]
        fresh = {m.id: m for m in self._accessed([h.memory for h in hits], now)}
        return [h.model_copy(update={"memory": fresh[h.memory.id]}) for h in hits]

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

    # -- moves -----------------------------------------------------------------------------

    def promote(self, id: str, to: str = "l1") -> Memory:
        """Move a memory to a hotter tier (no-op if already there)."""
        return self._manual_move(id, inputs.tier(to), hotter=True)

    def demote(self, id: str, to: str = "l3") -> Memory:
        """Move a memory to a colder tier (no-op if already there); pins do not stop this."""
        return self._manual_move(id, inputs.tier(to), hotter=False)

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

    # -- lifecycle -------------------------------------------------------------------------

    def plan(self, job: str, now: datetime | None = None) -> Plan:
        """What `job` would do (a dry run: nothing changes). Jobs: see `JOBS`."""
        return self.lifecycle.plan(job, now or self.clock())

    def run(
        self, job: str, now: datetime | None = None, progress: Progress | None = None
    ) -> JobReport:
        """Run one pass of `job` now, through the crash-safe executor."""
        self._writable()
        with self._mutex:
            report = self.lifecycle.run(job, now or self.clock(), progress)
        self._jobs[job] += 1
        return report

    def scheduler(self, *, blocking: bool = False) -> Scheduler:
        """A scheduler running this engine's jobs on the configured intervals."""
        cfg = self.config.scheduler
        intervals = cfg.intervals()
        every = [r.consolidate.every for k in KINDS if (r := self.policy.for_kind(k)).consolidate]
        intervals["consolidate"] = cfg.consolidate or (min(every).total_seconds() if every else 0.0)
        return Scheduler(
            self.run,
            intervals,
            self.backends.l1.client,
            self.backends.l1.keys,
            clock=self.clock,
            lease=cfg.lease,
            blocking=blocking,
        )

    def start_scheduler(self) -> None:
        """Run lifecycle jobs in the background (APScheduler) until `stop_scheduler`."""
        self._writable()
        if self._scheduler is None:
            self._scheduler = self.scheduler()
            self._scheduler.start()

    def stop_scheduler(self) -> None:
        """Stop background jobs, waiting for a running one to finish."""
        if self._scheduler is not None:
            self._scheduler.stop(wait=True)
            self._scheduler = None

    # -- export / import / check (tiermem.transfer, tiermem.check) -------------------------

    def export(
        self,
        path: str | Path,
        namespace: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> int:
        """Write every memory (of one namespace) to .parquet or .jsonl; returns how many."""
        from tiermem import transfer

        with self._mutex:  # no move runs meanwhile: every memory is seen exactly once
            return transfer.export(self, path, namespace, progress)

    def import_(
        self,
        path: str | Path,
        namespace: str | None = None,
        *,
        tier: str = "l1",
        progress: Progress | None = None,
    ) -> int:
        """Import an export (all rows, or one namespace's) into `tier`, keeping ids and
        every field; ids already stored are skipped. Returns how many were imported.
        A bad row raises ValidationError naming row and field, and nothing is written."""
        from tiermem import transfer

        with self._mutex:
            result = transfer.import_file(self, path, namespace, tier=tier, progress=progress)
            return result.imported

    def check(self, fix: bool = False) -> CheckReport:
        """Check consistency across tiers; with `fix`, repair what can be (see tiermem.check)."""
        from tiermem import check

        with self._mutex:
            return check.check(self, fix=fix)

    # -- introspection ---------------------------------------------------------------------

    def serve_metrics(self, port: int = 9108, addr: str = "127.0.0.1") -> Any:
        """Serve Prometheus metrics at http://addr:port/metrics until close; returns the
        server (``.server_port`` is the port; 0 picks a free one). See tiermem.obs.metrics."""
        return self.metrics.serve(port, addr)

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
            jobs=dict(self._jobs),
        )

    def sql(self, query: str, *, namespace: str | None = None, explain: bool = False) -> pa.Table:
        """Run one read-only SELECT over the views hot, warm, cold, memories, events.

        `namespace` restricts every view to one tenant; `explain` returns the plan.
        """
        if namespace is not None:
            check_namespace(namespace)
        return self._sql.query(query, namespace=namespace, explain=explain)
