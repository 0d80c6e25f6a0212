"""The lifecycle jobs: plan (pure, a dry run) and run (through the one executor).

``plan(job)`` builds stats snapshots and asks the pure planners what to do;
``run(job)`` applies that plan in batches: moves through `moves.Mover` (the
crash-safe path), deletes through the tiers, and appends every batch of
actions to the events log under the run's correlation id.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby

from tiermem import consolidate, consolidate_apply
from tiermem.access import HitLog
from tiermem.backends import Backends
from tiermem.errors import TierMemError, ValidationError
from tiermem.events import EventLog
from tiermem.lifecycle import capacity, planners, snapshot
from tiermem.lifecycle.planned import Planned, ids_of, namespaces_of
from tiermem.lifecycle.policy import Policy
from tiermem.lifecycle.stats import ItemStats
from tiermem.model import KINDS, TIERS, Action, JobReport, Plan, TierName
from tiermem.moves import Mover

JOBS = ("demote", "promote", "expire", "consolidate", "compact", "checkpoint")
Progress = Callable[[int, int], None]  # (done, total)
log = logging.getLogger("tiermem.jobs")


@dataclass
class Lifecycle:
    """Plans and runs jobs over one engine's tiers."""

    backends: Backends
    mover: Mover
    policy: Policy
    hits: HitLog
    events: EventLog
    dim: int  # batch sizes come from the mover (`Mover.batch_for`)
    # When demote last passed over each (tier, namespace, kind) group: its
    # SIEVE bits / S3-FIFO counters count hits after that (in memory only:
    # after a restart every hit counts again, which only delays eviction).
    passes: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    # What the consolidate job summarises clusters with (`Engine.summarizer`).
    summarizer: consolidate.Summarizer = field(default_factory=consolidate.ExtractiveSummarizer)

    def _demote_groups(self) -> list[planners.Group]:
        b, dim, passes = self.backends, self.dim, self.passes
        hot = snapshot.hot_groups(b.l1, dim, passes=passes, policy=self.policy)
        return hot + snapshot.warm_groups(b.l2, dim, self.hits, passes)

    def plan(self, job: str, now: datetime) -> Plan:
        """What `job` would do at `now`; changes nothing."""
        b, dim = self.backends, self.dim
        if job == "demote":
            planned, notes = self._planned(job, now)
            return Plan(job=job, now=now, actions=list(planned), notes=notes)
        if job == "promote":
            actions, notes, _ = self._promotions(now)
            return Plan(job=job, now=now, actions=actions, notes=notes)
        if job == "expire":
            groups = (
                snapshot.hot_groups(b.l1, dim)
                + snapshot.warm_groups(b.l2, dim, self.hits)
                + snapshot.cold_groups(b.l3, dim, self.hits)
            )
            return Plan(job=job, now=now, actions=planners.plan_expire(groups, self.policy, now))
        if job in ("compact", "checkpoint"):
            return Plan(job=job, now=now, notes=[_MAINTENANCE[job]])
        if job == "consolidate":
            cons = consolidate.plan(b, self.policy, now)
            return Plan(job=job, now=now, actions=cons.actions, notes=cons.notes)
        raise ValidationError(f"unknown job {job!r}; use one of {', '.join(JOBS)}", field="job")

    def _promotions(self, now: datetime) -> tuple[list[Action], list[str], dict[str, str]]:
        """The promote job's moves that fit their destination (`capacity.fit`; where
        not all fit, the most hit go first), notes on those held back, and each
        candidate's kind."""
        b = self.backends
        cands = snapshot.promote_candidates(b.l2, b.l3, self.dim, self.hits, now)
        hit = {s.id: len(s.recent_hits) for _, s in cands}
        actions = sorted(planners.plan_promote(cands, self.policy, now), key=lambda a: -hit[a.id])
        kinds = {s.id: s.kind for _, s in cands}
        fits, notes = capacity.fit(_dests(actions, kinds), self.policy, self.count)
        return [a for a, ok in zip(actions, fits, strict=True) if ok], notes, kinds

    def _planned(self, job: str, now: datetime) -> tuple[Sequence[Action], list[str]]:
        """`plan(job)`'s actions and notes; a demote's as columns (`planned.Planned`:
        no `Action` per memory unless one is asked for)."""
        if job == "demote":
            return planners.plan_demote_moves(self._demote_groups(), self.policy, now)
        plan = self.plan(job, now)
        return plan.actions, plan.notes

    def run(self, job: str, now: datetime, progress: Progress | None = None) -> JobReport:
        """Plan `job`, apply the plan in batches, and report."""
        started = time.perf_counter()
        if job == "consolidate":  # its own executor: writes memories, then moves (consolidate.py)
            report = self._consolidate(now)
        else:
            report = self._run_planned(job, now, progress)
        report.seconds = time.perf_counter() - started
        return report

    def _run_planned(self, job: str, now: datetime, progress: Progress | None) -> JobReport:
        """Every job but consolidate: its plan through `apply`; a promote's
        destinations then held to their capacity (`settle`)."""
        kinds: dict[str, str] = {}  # of the promote job's candidates
        actions: Sequence[Action]
        if job == "promote":
            actions, notes, kinds = self._promotions(now)
        else:
            actions, notes = self._planned(job, now)
        if job == "checkpoint":
            self.checkpoint()
        elif job == "compact":
            self._compact()
        report = self.apply(job, actions, now, progress)
        if job == "promote":  # into groups that evict or warn when over capacity
            notes += self.settle(_dests(actions, kinds), now)
        if job == "demote":
            for tier in ("l1", "l2"):
                for ns in self.backends.tiers[tier].namespaces():
                    for kind in KINDS:
                        self.passes[(tier, ns, kind)] = now
        report.notes = notes
        return report

    def _consolidate(self, now: datetime) -> JobReport:
        """Consolidate through its own executor, then hold the L1 and L2 groups its
        new memories went to (`capacity.Room`; L3 has no capacity) to their capacity."""
        cons = consolidate.plan(self.backends, self.policy, now)
        worker = consolidate_apply.Consolidator(
            self.backends, self.mover, self.policy, self.summarizer, self.dim, self.events,
            self.count,
        )  # fmt: skip
        report = worker.run(cons, now)
        into = dict.fromkeys((w.namespace, w.rules.into) for w in cons.work)
        report.notes += self.settle([(t, ns, k) for ns, k in into for t in ("l1", "l2")], now)
        return report

    def apply(
        self, job: str, actions: Sequence[Action], now: datetime, progress: Progress | None = None
    ) -> JobReport:
        """Apply actions in batches through the executor; log each batch as events."""
        started = time.perf_counter()
        run_id = uuid.uuid4().hex[:12]
        report = JobReport(job=job, run=run_id)
        fields = {"job": job, "run": run_id}  # correlation id: also in events and spans
        log.info("job %s run %s: %d actions", job, run_id, len(actions), extra=fields)
        batches = _Batches(self.events, job, run_id, now, report, len(actions), progress)
        for run in _runs(_batches(actions, self.mover.batch_for)):
            if isinstance(actions, Planned) and run[0][0].action == "move":
                self._apply_moves(run, batches)
            else:
                for batch in run:
                    try:
                        self._apply(batch, report)
                        batches.done(batch)
                    except TierMemError as exc:
                        batches.failed(batch, exc)
        report.seconds = time.perf_counter() - started
        log.info(
            "job %s run %s: moved %d, deleted %d in %.3fs",
            job,
            run_id,
            report.moved,
            report.deleted,
            report.seconds,
            extra=fields,
        )
        return report

    def _apply(self, batch: Sequence[Action], report: JobReport) -> None:
        first = batch[0]
        ids = ids_of(batch)
        if first.action == "move":
            assert first.dst is not None
            nss = namespaces_of(batch)  # spares L1 its directory lookups
            report.moved += self.mover.move(first.src, first.dst, ids, nss)
            self._moved(first, ids)
        elif first.action == "delete":
            report.deleted += self.backends.tiers[first.src].delete(ids)
            self.hits.drop(ids)

    def _moved(self, first: Action, ids: list[str]) -> None:
        if TIERS.index(first.dst or first.src) < TIERS.index(first.src):
            # a promotion spends the hits that earned it: the next tier up
            # needs a new window of hits, not the same ones counted again
            self.hits.drop(ids)

    def _apply_moves(self, run: Sequence[Sequence[Action]], batches: _Batches) -> None:
        """Consecutive batches of planned moves between two tiers, through one
        `Mover.move` (out of L1 it overlaps a batch's Redis work with the next
        batch's), each logged as it finishes. After a failed batch the move goes
        on with the ones after it, as batch by batch."""
        first = run[0][0]
        assert first.dst is not None
        while run:
            finished = 0

            def each(i: int, moved: int, run: Sequence[Sequence[Action]] = run) -> None:
                nonlocal finished
                batches.report.moved += moved
                self._moved(first, ids_of(run[i]))
                batches.done(run[i])
                finished = i + 1

            ids = [i for b in run for i in ids_of(b)]
            nss = [n for b in run for n in namespaces_of(b)]
            try:
                self.mover.move(
                    first.src, first.dst, ids, nss, cut=[len(b) for b in run], each=each
                )
                return
            except TierMemError as exc:
                batches.failed(run[finished], exc)
                run = run[finished + 1 :]

    def count(self, tier: TierName, namespace: str, kind: str) -> int:
        """Memories of `kind` in `namespace` in L1 or L2 (the tiers with capacities)."""
        b = self.backends
        return b.l1.count(namespace, kind) if tier == "l1" else b.l2.count(namespace, kind)

    def settle(
        self, groups: Iterable[capacity.Group], now: datetime, keep: Collection[str] = ()
    ) -> list[str]:
        """After moves into `groups`: evict the excess of those now over capacity
        whose policy evicts (sparing `keep`), warn for those whose policy warns.
        Returns a note per group evicted from (the moves are logged as job "evict")."""
        notes = []
        for tier, ns, kind in capacity.overflowing(dict.fromkeys(groups), self.policy, self.count):
            n = self.evict(tier, ns, kind, now, keep).moved
            notes.append(f"{ns}/{kind} in {tier} went over capacity: evicted {n} (job evict)")
        return notes

    def evict(
        self, tier: TierName, namespace: str, kind: str, now: datetime, keep: Collection[str] = ()
    ) -> JobReport:
        """Demote the excess of a group an add or a promotion took over capacity
        (``on_full: evict``), down to `capacity.EVICT_TO` of it, never an id in
        `keep`; job "evict"."""
        b = self.backends
        if tier == "l1":
            groups = snapshot.hot_groups(b.l1, self.dim, [namespace])
        else:
            groups = [g for g in snapshot.warm_groups(b.l2, self.dim, self.hits)
                      if g.namespace == namespace]  # fmt: skip
        actions: list[Action] = []
        for group in groups:
            if group.kind == kind:
                more, _ = planners.demote_group(group, self.policy, now, capacity.EVICT_TO, keep)
                actions += more
        return self.apply("evict", actions, now)

    def promote_on_read(self, read: Sequence[tuple[TierName, ItemStats]], now: datetime) -> int:
        """Read-through: move the memories just got from L2 whose kind's
        ``promote.on_read`` hits (this read's included) are reached into L1; job
        "promote-on-read". L1 groups this takes over capacity evict at once when
        their ``on_full`` is evict, warn when it is warn; a full ``reject`` group
        takes none (they stay in L2). Returns how many moved."""
        # only what L2 still holds: a job (another thread's) may have moved it since the read
        held = self.backends.l2.locate([s.id for _, s in read])
        read = [(t, s) for t, s in read if s.id in held]  # the planner keeps L2 reads only
        actions = planners.plan_promote_on_read(read, self.policy, now)
        if not actions:
            return 0
        kinds = {s.id: s.kind for _, s in read}
        fits, _ = capacity.fit(_dests(actions, kinds), self.policy, self.count)
        actions = [a for a, ok in zip(actions, fits, strict=True) if ok]
        moved = self.apply("promote-on-read", actions, now).moved if actions else 0
        self.settle(_dests(actions, kinds), now)
        return moved

    def checkpoint(self) -> None:
        """Persist derived and in-process state: L2 indexes and access stats, L3 access, hits."""
        self.backends.l2.checkpoint()
        self.backends.l3.checkpoint()
        self.hits.save()

    def _compact(self) -> None:
        for ns in sorted(self.backends.l3.namespaces()):
            self.backends.l3.compact_namespace(ns)
        self.backends.l2.checkpoint()  # also compacts L2 segments where worthwhile


def _dests(actions: Sequence[Action], kinds: dict[str, str]) -> list[capacity.Group]:
    """Each move's destination group (tier, namespace, kind), in order."""
    return [(a.dst or a.src, a.namespace, kinds[a.id]) for a in actions]


_MAINTENANCE = {
    "compact": "rewrites L3 namespaces (applying deletes) and compacts L2 segments",
    "checkpoint": "persists L2 indexes and access stats, L3 access stats and recent hits",
}


@dataclass
class _Batches:
    """What `Lifecycle.apply` does as each batch ends: events and progress, or the error."""

    events: EventLog
    job: str
    run_id: str
    now: datetime
    report: JobReport
    total: int
    progress: Progress | None
    count: int = 0  # actions of the batches ended so far

    def done(self, batch: Sequence[Action]) -> None:
        self.events.append(self.run_id, self.job, self.now, batch)
        self._ended(batch)

    def failed(self, batch: Sequence[Action], exc: TierMemError) -> None:
        self.report.errors.append(f"{type(exc).__name__}: {exc}")
        fields = {"job": self.job, "run": self.run_id}
        log.error("job %s run %s: batch failed: %s", self.job, self.run_id, exc, extra=fields)
        self._ended(batch)

    def _ended(self, batch: Sequence[Action]) -> None:
        self.count += len(batch)
        if self.progress is not None:
            self.progress(self.count, self.total)


def _runs(batches: Sequence[Sequence[Action]]) -> list[list[Sequence[Action]]]:
    """Consecutive batches of the same (action, src, dst)."""
    return [list(run) for _, run in groupby(batches, key=_what)]


def _what(batch: Sequence[Action]) -> tuple[str, str, str | None]:
    first = batch[0]
    return first.action, first.src, first.dst


def _batches(
    actions: Sequence[Action], size_for: Callable[[TierName], int]
) -> Sequence[Sequence[Action]]:
    """Runs of the same (action, src, dst), cut to the mover's batch size for dst;
    namespaces kept together (a destination writes one file per namespace per batch)."""
    if isinstance(actions, Planned):
        return actions.batches(size_for)
    out: list[list[Action]] = []
    ordered = sorted(actions, key=lambda a: (a.action, a.src, a.dst or "", a.namespace))
    for (_, src, dst), run in groupby(ordered, key=lambda a: (a.action, a.src, a.dst)):
        items, size = list(run), size_for(dst or src)
        out += [items[i : i + size] for i in range(0, len(items), size)]
    return out
