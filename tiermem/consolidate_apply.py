"""Applying a consolidate plan (`consolidate.plan`): the crash-ordered executor.

The order per cluster, and why a crash at any point converges, is in the
`tiermem.consolidate` module doc. Here the order holds per cluster while the
work is batched: steps (a) and (b) over chunks of clusters holding
`CHUNK_SOURCES` sources (one put per tier each), step (c) in the Mover's
batches across clusters.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from tiermem import records, schema
from tiermem.backends import Backends
from tiermem.consolidate import (
    CONSOLIDATED_INTO,
    MAX_SUMMARY_CHARS,
    Consolidation,
    Work,
    centroid,
)
from tiermem.errors import TierMemError
from tiermem.events import EventLog
from tiermem.failpoints import failpoint
from tiermem.lifecycle.policy import Policy
from tiermem.model import TIERS, JobReport, Memory, MemoryIn, TierName
from tiermem.moves import Mover
from tiermem.summarize import Summarizer, cut_text, span_note

log = logging.getLogger("tiermem.consolidate")

# Steps (a) and (b) run over chunks of units holding this many sources: one put per
# tier a chunk instead of two per cluster (topics of 10: 2.8 -> ~0.3 ms a cluster).
CHUNK_SOURCES = 1_000


@dataclass
class Consolidator:
    """Applies a `Consolidation` (module doc: the crash ordering is enforced here)."""

    backends: Backends
    mover: Mover
    policy: Policy
    summarizer: Summarizer
    dim: int
    events: EventLog

    def run(self, cons: Consolidation, now: datetime) -> JobReport:
        report = JobReport(job="consolidate", run=uuid.uuid4().hex[:12], notes=list(cons.notes))
        start = getattr(self.summarizer, "start_run", None)
        if callable(start):
            start()
        made = grown = 0
        moves, done = _Moves(), Consolidation([])
        for chunk in _chunks(cons.work, CHUNK_SOURCES):
            try:
                targets = self._write_all(chunk, now)
                self._mark_all(chunk, targets, now)
            except TierMemError as exc:  # one chunk failing does not stop the others
                report.errors.append(f"{type(exc).__name__}: {exc}")
                log.error(
                    "consolidate: %d units in %s failed: %s", len(chunk), chunk[0].namespace, exc
                )
                continue
            for w in chunk:
                made += w.op == "new"
                grown += w.op == "grow"
                report.merged += len(w.sources) if w.op != "finish" else 0
                moves.add(w)
                done.work.append(w)
            if self._move(moves.full(self.mover.batch_for), report):  # events with the moves:
                done = self._log(done, report.run, now)  # one fsync a batch, not a unit
        self._move(moves.all(), report)
        self._log(done, report.run, now)
        report.notes.append(f"made {made} {'memory' if made == 1 else 'memories'}, grew {grown}")
        return report

    def _write_all(self, chunk: list[Work], now: datetime) -> list[str]:
        """Step (a) for a chunk of units: each one's consolidated memory, durable
        (the new ones in one put per tier: each row is written whole or not at
        all, which is all the crash order needs); returns their ids."""
        targets: list[str] = []
        new: dict[TierName, list[pa.Table]] = {}
        for w in chunk:
            target, table = self._write(w, now)
            targets.append(target)
            if table is not None:
                new.setdefault(self.policy.for_kind(w.rules.into).place, []).append(table)
        for tier, tables in new.items():
            self.backends.tiers[tier].put(pa.concat_tables(tables))
        failpoint("consolidate.written")
        return targets

    def _mark_all(self, chunk: list[Work], targets: list[str], now: datetime) -> None:
        """Step (b) for a chunk: mark every source `consolidated_into` its unit's
        memory, in one put per tier."""
        by_tier: dict[TierName, list[Memory]] = {}
        for w, target in zip(chunk, targets, strict=True):
            for m in w.sources:
                if m.metadata.get(CONSOLIDATED_INTO) != target:
                    meta = {**m.metadata, CONSOLIDATED_INTO: target}
                    by_tier.setdefault(m.tier, []).append(
                        records.edited(m, {"metadata": meta}, now, bump=False)
                    )
        for tier, marked in by_tier.items():
            self.backends.tiers[tier].put(schema.from_memories(self.dim, marked))
        failpoint("consolidate.marked")

    def _write(self, w: Work, now: datetime) -> tuple[str, pa.Table | None]:
        """Step (a) of one unit: its memory's id, and for a new memory its row (the
        caller puts it); a grown version is put here (it replaces a row in place)."""
        if w.op == "finish":
            assert w.sources
            into = w.sources[0].metadata.get(CONSOLIDATED_INTO)
            return (str(into) if into is not None else (w.target.id if w.target else "")), None
        sources = list(w.sources)
        if w.op == "grow":
            assert w.target is not None
            known = self._fetch(
                [i for i in w.target.source_ids if i not in {s.id for s in sources}]
            )
            sources = sorted([*known, *sources], key=lambda m: (m.created_at, m.id))
        text = self._summary(sources)
        vec = centroid(sources)
        importance = max(m.importance for m in sources)
        ids = [m.id for m in sources]
        meta = {
            "consolidated_from": len(sources),
            "first_at": sources[0].created_at.isoformat(),
            "last_at": sources[-1].created_at.isoformat(),
        }
        if w.op == "grow":
            assert w.target is not None
            old = w.target
            changes = {
                "text": text,
                "embedding": vec,
                "source_ids": list(dict.fromkeys([*old.source_ids, *ids])),
                "importance": max(old.importance, importance),
                "metadata": {**old.metadata, **meta},
            }
            new = records.edited(old, changes, now, bump=True)
            self.backends.tiers[old.tier].put(schema.from_memories(self.dim, [new]))
            return new.id, None
        item = MemoryIn(
            text=text, namespace=w.namespace, kind=w.rules.into, metadata=meta,
            importance=importance, embedding=vec,
        )  # fmt: skip
        table = records.new_rows([item], vec[None, :], now, self.dim)
        col = pa.array([ids], schema.schema(self.dim).field("source_ids").type)
        table = table.set_column(table.schema.get_field_index("source_ids"), "source_ids", col)
        return str(table["id"][0].as_py()), table

    def _summary(self, sources: Sequence[Memory]) -> str:
        texts = [m.text for m in sources]
        body = cut_text(self.summarizer.summarize(texts).strip(), MAX_SUMMARY_CHARS)
        note = span_note(len(sources), sources[0].created_at, sources[-1].created_at)
        return f"{body} {note}" if body else note

    def _fetch(self, ids: Sequence[str]) -> list[Memory]:
        """The memories of `ids`, each from its hottest tier (missing ones skipped)."""
        out: list[Memory] = []
        todo = list(ids)
        for tier in TIERS:
            if not todo:
                break
            got = schema.to_memories(self.backends.tiers[tier].get(todo), tier)
            out += got
            seen = {m.id for m in got}
            todo = [i for i in todo if i not in seen]
        return out

    def _log(self, done: Consolidation, run: str, now: datetime) -> Consolidation:
        """Log the actions of the units `done`; returns an empty one for the next."""
        self.events.append(run, "consolidate", now, done.actions)
        return Consolidation([])

    def _move(self, batches: list[Waiting], report: JobReport) -> bool:
        """Step (c), for many units at once: a move per cluster wrote one L3 file
        per cluster. Marked sources not yet moved are safe: a re-run's step 1
        moves them (module doc), so a failed move is reported, not retried.
        Returns whether there was anything to move."""
        for src, dst, ms in batches:
            try:
                ids, nss = [m.id for m in ms], [m.namespace for m in ms]
                report.moved += self.mover.move(src, dst, ids, namespaces=nss)
                failpoint("consolidate.moved")
            except TierMemError as exc:
                report.errors.append(f"{type(exc).__name__}: {exc}")
                log.error("consolidate: moving %d sources %s -> %s: %s", len(ms), src, dst, exc)
        return bool(batches)


def _chunks(work: list[Work], sources: int) -> Iterator[list[Work]]:
    """Runs of units holding at least `sources` sources each (the last: the rest)."""
    chunk: list[Work] = []
    held = 0
    for w in work:
        chunk.append(w)
        held += len(w.sources)
        if held >= sources:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


Waiting = tuple[TierName, TierName, list[Memory]]  # (source tier, destination, sources)


class _Moves:
    """Marked sources waiting for step (c), by (source tier, destination)."""

    def __init__(self) -> None:
        self.waiting: dict[tuple[TierName, TierName], list[Memory]] = {}

    def add(self, w: Work) -> None:
        for m in w.sources:
            self.waiting.setdefault((m.tier, w.rules.sources_to), []).append(m)

    def full(
        self, size_for: Callable[[TierName], int]
    ) -> list[tuple[TierName, TierName, list[Memory]]]:
        """The (src, dst, sources) holding at least a move batch, taken out."""
        ready = [key for key, ms in self.waiting.items() if len(ms) >= size_for(key[1])]
        return [(*key, self.waiting.pop(key)) for key in ready]

    def all(self) -> list[Waiting]:
        """Everything still waiting, taken out."""
        out = [(*key, ms) for key, ms in self.waiting.items()]
        self.waiting = {}
        return out
