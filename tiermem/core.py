"""The engine's state and plumbing: opening, closing, locating memories, accesses.

`EngineCore` owns the data dir (lock, format, tiers, mover, logs, SQL,
scheduler). The write path (`writes.py`) and the read path (`reads.py`)
build on it; `engine.Engine` is the public façade that combines them.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self, cast

import pyarrow as pa

from tiermem import memtypes, schema
from tiermem.access import HitLog
from tiermem.backends import Backends, open_backends
from tiermem.config import Config, check_format
from tiermem.embed import Embedder, default_embedder
from tiermem.errors import ConfigError, NotFound, TierMemError
from tiermem.events import EventLog
from tiermem.ids import Clock, to_us, utcnow
from tiermem.lifecycle.jobs import Lifecycle
from tiermem.lifecycle.policy import Policy, load_policy
from tiermem.lifecycle.scheduler import Scheduler
from tiermem.lifecycle.watch import policy_file, signature
from tiermem.lock import WriterLock
from tiermem.model import (
    TIERS,
    Action,
    Memory,
    TierName,
)
from tiermem.moves import Mover
from tiermem.obs.metrics import EngineMetrics
from tiermem.retrieval import Candidate
from tiermem.sql import SqlViews
from tiermem.tiers.hot_redis import Later

if TYPE_CHECKING:
    from tiermem.engine import Engine


class EngineCore:
    """State shared by the write and read paths of an `Engine`."""

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
        self.policy_ref = policy or config.policy  # a shipped name or a file path
        # the file as loaded, for the scheduler's policy watcher (taken first: an
        # edit racing the load is then seen as a change, never missed)
        file = policy_file(self.policy_ref)
        self.policy_signature = signature(file) if file is not None else None
        self.policy: Policy = load_policy(self.policy_ref)
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
            self.mover = Mover(
                self._b.tiers,
                self.path / "moves",
                config.moves.batch,
                self.clock,
                cold_batch=config.moves.cold_batch,
            )
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
            )
            self._scheduler: Scheduler | None = None
            self.types = memtypes.MemTypes(cast("Engine", self))  # dedupe, versions, rollback
            self._sql = SqlViews(self._b, self.format.dim, events=self.events)
            self.metrics = EngineMetrics(cast("Engine", self))  # instruments this instance
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    def close(self) -> None:
        """Persist derived state, stop the embedded Redis (if ours), release the lock."""
        # Outside the mutex: a job that is starting needs it, and we wait for jobs.
        self.stop_scheduler()
        with self._mutex:
            if self._b is None:
                return
            b, self._b = self._b, None
            try:
                if not self.read_only:
                    self.hits.save()
                self._sql.close()
                b.close()
            finally:
                if self._lock is not None:
                    self._lock.release()

    def __enter__(self) -> Self:
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

    def _log_user(self, job: str, actions: list[Action]) -> None:
        """Record a user's moves and deletes (job "user") or forget (job "forget") in the
        events log."""
        self.events.append(uuid.uuid4().hex[:12], job, self.clock(), actions)

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

    def _accessed(self, memories: list[Memory], now: datetime) -> list[Memory]:
        """Record one access of each memory; returns them with updated stats."""
        self._record_access(memories, now)
        return [
            m.model_copy(update={"last_accessed_at": now, "access_count": m.access_count + 1})
            for m in memories
        ]

    def _record_access(
        self, found: Sequence[Memory | Candidate], now: datetime, namespace: str | None = None
    ) -> None:
        """Record one access of each memory (or search candidate of `namespace`) in its tier.

        L1 accesses go to Redis (shared, so read-only processes count too);
        L2/L3 state belongs to the writer, so only the writer records those.
        """
        self._start_access(found, now, namespace).wait()

    def _start_access(
        self, found: Sequence[Memory | Candidate], now: datetime, namespace: str | None = None
    ) -> Later[None]:
        """`_record_access` with L1's part sent to Redis, not awaited: wait for it (in a
        ``finally``) once other work is done."""
        by_tier: dict[TierName, list[str]] = {}
        l1_nss: list[str | None] = []
        for m in found:
            by_tier.setdefault(m.tier, []).append(m.id)
            if m.tier == "l1":
                l1_nss.append(m.namespace if isinstance(m, Memory) else namespace)
        for tier, ids in by_tier.items():
            self._hits[tier] += len(ids)
            if tier == "l1" or self.read_only:
                continue
            self.backends.tiers[tier].touch(ids, now)
            self.hits.record(ids, to_us(now))
        # L1 last, so nothing here raises once it is sent (its connection would be held);
        # known namespaces spare L1 its directory lookup. No L1 hits: nothing is sent.
        hint = None if None in l1_nss else [str(n) for n in l1_nss]
        return self.backends.l1.touch_later(by_tier.get("l1", []), now, namespaces=hint)

    def stop_scheduler(self) -> None:
        """Stop background jobs, waiting for a running one to finish."""
        if self._scheduler is not None:
            self._scheduler.stop(wait=True)
            self._scheduler = None
