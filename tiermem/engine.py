"""The façade: one `Engine` per data dir composes the tiers, moves and SQL.

The engine validates at the edge, picks the tier, and delegates: storage to
the tiers (`tiers/`), moves to the one crash-safe executor (`moves.py`),
ranking to `retrieval.py`, SQL to `sql.py`. It holds no storage logic. Its
code is in three layers: `core.py` (state, open/close, locating memories),
`writes.py` and `reads.py` (the two paths); this module adds moves,
lifecycle, transfer, introspection and SQL.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from tiermem import inputs
from tiermem.check import CheckReport
from tiermem.consolidate import Summarizer
from tiermem.errors import PolicyError, ValidationError
from tiermem.fields import check_namespace
from tiermem.lifecycle import capacity
from tiermem.lifecycle.jobs import Progress
from tiermem.lifecycle.policy import Policy, load_policy
from tiermem.lifecycle.scheduler import Scheduler
from tiermem.lifecycle.watch import PolicyWatcher, policy_file
from tiermem.model import (
    KINDS,
    TIERS,
    Action,
    JobReport,
    Memory,
    Plan,
    Stats,
    TierName,
)
from tiermem.reads import Reads
from tiermem.resources import resolve_policy
from tiermem.writes import Writes

log = logging.getLogger("tiermem.engine")


class Engine(Writes, Reads):
    """A tiered memory store on one data dir. Use `tiermem.open()` to make one.

    >>> import tempfile, tiermem
    >>> with tiermem.open(tempfile.mkdtemp(), embedder=tiermem.HashingEmbedder(64),
    ...                   **{"embedding.dim": 64}) as mem:  # an embedded Redis, stopped on close
    ...     m = mem.add("Alice prefers green tea", namespace="user:alice")
    ...     mem.search("what tea does alice like", namespace="user:alice")[0].memory.id == m.id
    True
    """

    @property
    def summarizer(self) -> Summarizer:
        """What consolidation summarises clusters with (default: extractive); settable."""
        return self.lifecycle.summarizer

    @summarizer.setter
    def summarizer(self, value: Summarizer) -> None:
        self.lifecycle.summarizer = value

    def promote(self, id: str, to: str = "l1") -> Memory:
        """Move a memory to a hotter tier (no-op if already there); logged as an event
        (job ``user``). Held to the destination's capacity: `CapacityError` (and no
        move) when its group is full and ``on_full: reject``; with ``evict``, others
        are evicted to make room, never this memory. A promotion is not an access:
        the next demote may move an idle memory colder again (`pin` keeps it)."""
        return self._manual_move(id, inputs.tier(to), hotter=True)

    def demote(self, id: str, to: str = "l3") -> Memory:
        """Move a memory to a colder tier (no-op if already there); pins do not stop this.
        Logged as an event (job ``user``)."""
        return self._manual_move(id, inputs.tier(to), hotter=False)

    def _manual_move(self, id: str, dst: TierName, *, hotter: bool) -> Memory:
        self._writable()
        verb = "promote" if hotter else "demote"
        with self._mutex:
            mem = self._find_one(id)
            src = mem.tier
            if src != dst and (TIERS.index(dst) < TIERS.index(src)) != hotter:
                raise ValidationError(f"cannot {verb} from {src} to {dst}", field="to")
            group = (dst, mem.namespace, mem.kind)
            if src != dst and hotter:
                capacity.require_room(group, self.policy, self.lifecycle.count)
            if src != dst and self.mover.move(src, dst, [id]):
                # the events log is the history of every move, a user's too
                why = f"{verb}d by the user"
                move = Action(
                    id=id, namespace=mem.namespace, action="move", src=src, dst=dst, reason=why
                )
                self._log_user("user", [move])
                if hotter:  # make room as an add would, but never by undoing this move
                    self.lifecycle.settle([group], self.clock(), keep={id})
            return self._find_one(id)

    def pin(self, id: str) -> Memory:
        """Pin a memory: no rule will move it colder."""
        return self.update(id, pinned=True)

    def unpin(self, id: str) -> Memory:
        """Unpin a memory."""
        return self.update(id, pinned=False)

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

    def reload_policy(self) -> bool:
        """Re-read the policy file; an invalid one is rejected and the old one kept.

        Returns whether the new policy took effect. Everything reads the new
        rules at once; a running `start_scheduler` gets intervals derived from
        the policy (``consolidate.every``) rescheduled. A worker's scheduler
        also notices edits itself (``scheduler.policy_watch``; see `scheduler`).
        """
        try:
            new = load_policy(self.policy_ref)
        except PolicyError as exc:
            log.error("policy reload rejected, keeping %r: %s", self.policy.name, exc)
            return False
        self._adopt_policy(new, self._scheduler)
        return True

    def _adopt_policy(self, new: Policy, scheduler: Scheduler | None) -> None:
        with self._mutex:  # never mid-job: a run plans with one set of rules
            self.policy = self.lifecycle.policy = new
        log.info("policy reloaded: %r from %s", new.name, new.source)
        if scheduler is not None:
            scheduler.reschedule(self.job_intervals())

    def job_intervals(self) -> dict[str, float]:
        """Seconds between runs of each job (0: off): the ``[scheduler]`` config, with
        consolidate from the policy's shortest ``consolidate.every`` unless set there."""
        cfg = self.config.scheduler
        intervals = cfg.intervals()
        every = [r.consolidate.every for k in KINDS if (r := self.policy.for_kind(k)).consolidate]
        intervals["consolidate"] = cfg.consolidate or (min(every).total_seconds() if every else 0.0)
        return intervals

    def scheduler(self, *, blocking: bool = False) -> Scheduler:
        """A scheduler running this engine's jobs on `job_intervals`.

        Its ``reload`` (SIGHUP to `tiermem worker`) re-reads the policy file; if
        the policy is a file path (not a shipped name) and ``scheduler.policy_watch``
        is on, it also polls that file. A valid new policy replaces the old one
        and changed job intervals are rescheduled (see `tiermem.lifecycle.watch`).
        """
        sched = Scheduler(
            self.run,
            self.job_intervals(),
            self.backends.l1.client,
            self.backends.l1.keys,
            clock=self.clock,
            lease=self.config.scheduler.lease,
            blocking=blocking,
        )
        path = policy_file(self.policy_ref)
        watcher = PolicyWatcher(
            path or resolve_policy(self.policy_ref),
            lambda new: self._adopt_policy(new, sched),
            seen=self.policy_signature if path is not None else "now",
        )
        sched.reload = watcher.reload
        if path is not None and self.config.scheduler.policy_watch:
            sched.every("policy-watch", self.config.scheduler.policy_watch, watcher.poll)
        return sched

    def start_scheduler(self) -> None:
        """Run lifecycle jobs in the background (APScheduler) until `stop_scheduler`."""
        self._writable()
        if self._scheduler is None:
            self._scheduler = self.scheduler()
            self._scheduler.start()

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
