"""Applying a consolidate plan (`consolidate.plan`): the crash-ordered executor.

The order per cluster, and why a crash at any point converges, is in the
`tiermem.consolidate` module doc. Here the order holds per cluster while the
work is batched: steps (a) and (b) over chunks of clusters holding
`CHUNK_SOURCES` sources (one put per tier each), step (c) in the Mover's
batches across clusters, marking the sources as they move (`_Moves.patch`).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiermem import records, schema
from tiermem.backends import Backends
from tiermem.consolidate import (
    CONSOLIDATED_INTO,
    MAX_SUMMARY_CHARS,
    Consolidation,
    Merges,
    Source,
    Work,
    centroid,
)
from tiermem.errors import TierMemError
from tiermem.events import EventLog
from tiermem.failpoints import failpoint
from tiermem.ids import from_us
from tiermem.lifecycle import capacity
from tiermem.lifecycle.policy import Policy
from tiermem.model import TIERS, JobReport, Memory, MemoryIn, TierName
from tiermem.moves import Mover, Patch
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
    count: capacity.Counter  # (tier, namespace, kind) -> memories there now

    def run(self, cons: Consolidation, now: datetime) -> JobReport:
        report = JobReport(job="consolidate", run=uuid.uuid4().hex[:12], notes=list(cons.notes))
        start = getattr(self.summarizer, "start_run", None)
        if callable(start):
            start()
        made = grown = 0
        moves, done = _Moves(now), []
        room = capacity.Room(self.policy, self.count)
        for chunk in _chunks(cons.work, CHUNK_SOURCES):
            try:
                targets = self._write_all(chunk, now, room)
                self._mark_staying(chunk, targets, now)
            except TierMemError as exc:  # one chunk failing does not stop the others
                report.errors.append(f"{type(exc).__name__}: {exc}")
                log.error(
                    "consolidate: %d units in %s failed: %s", len(chunk), chunk[0].namespace, exc
                )
                continue
            for w, target in zip(chunk, targets, strict=True):
                made += w.op == "new"
                grown += w.op == "grow"
                report.merged += len(w.sources) if w.op != "finish" else 0
                moves.add(w, target)
                done.append(w)
            if self._move(moves.full(self.mover.batch_for), moves.patch, report):
                done = self._log(done, report.run, now)  # with the moves: one fsync a batch
        self._move(moves.all(), moves.patch, report)
        self._log(done, report.run, now)
        report.notes.append(f"made {made} {'memory' if made == 1 else 'memories'}, grew {grown}")
        report.notes += room.notes()
        return report

    def _write_all(self, chunk: list[Work], now: datetime, room: capacity.Room) -> list[str]:
        """Step (a) for a chunk of units: each one's consolidated memory, durable
        (grown and new ones in one put per tier each: each row is written whole
        or not at all, which is all the crash order needs); returns their ids. A new
        memory goes to its kind's place, or colder where that is full (`room`)."""
        self._grow_all([w for w in chunk if w.op == "grow"], now)
        targets: list[str | None] = []
        placed: list[TierName] = []
        new: dict[TierName, _NewRows] = {}
        for w in chunk:
            target = _target(w)
            tier = self.policy.for_kind(w.rules.into).place
            if target is None:  # a new memory: its row is built with the others of its tier
                tier = room.place(tier, w.namespace, w.rules.into)
                new.setdefault(tier, _NewRows()).add(self._new_item(w), [m.id for m in w.sources])
            targets.append(target)
            placed.append(tier)
        made: dict[TierName, Iterator[str]] = {}
        for tier, rows in new.items():
            table = rows.table(now, self.dim)
            self.backends.tiers[tier].put(table)
            made[tier] = iter(table.column("id").to_pylist())
        failpoint("consolidate.written")
        return [
            t if t is not None else next(made[tier])
            for tier, t in zip(placed, targets, strict=True)
        ]

    def _mark_staying(self, chunk: list[Work], targets: list[str], now: datetime) -> None:
        """Step (b) for the sources already in their unit's `sources_to` (they do not
        move): mark each `consolidated_into` its unit's memory, one put per tier.
        The sources that move are marked on the way (`_Moves.patch`)."""
        by_tier: dict[TierName, list[Memory]] = {}
        for w, target in zip(chunk, targets, strict=True):
            for m in w.sources:
                if m.tier == w.rules.sources_to and m.metadata.get(CONSOLIDATED_INTO) != target:
                    meta = {**m.metadata, CONSOLIDATED_INTO: target}
                    by_tier.setdefault(m.tier, []).append(
                        records.edited(m, {"metadata": meta}, now, bump=False)
                    )
        for tier, marked in by_tier.items():
            self.backends.tiers[tier].put(schema.from_memories(self.dim, marked))
        failpoint("consolidate.marked")

    def _grow_all(self, grows: list[Work], now: datetime) -> None:
        """Step (a) for a chunk's grown memories: each one's new version (text,
        embedding and importance from all its sources) replaces its row in the
        tier it is in, one put per tier, the known sources read in one go (a
        read per grown memory cost ~35 ms where its sources were in L3)."""
        sources: dict[str, list[Memory]] = {}  # target id -> its new sources
        olds: dict[str, Memory] = {}
        for w in grows:  # two kinds may grow one memory in a run: one new version
            assert w.target is not None
            olds[w.target.id] = w.target
            sources.setdefault(w.target.id, []).extend(w.sources)
        new_ids = {m.id for ms in sources.values() for m in ms}
        known = self._known([i for o in olds.values() for i in o.source_ids if i not in new_ids])
        by_tier: dict[TierName, list[Memory]] = {}
        for tid, old in olds.items():
            mine = [known[i] for i in old.source_ids if i in known and i not in new_ids]
            every: list[Source] = sorted([*mine, *sources[tid]], key=lambda m: (m.created_at, m.id))
            changes = {
                "text": self._summary(every),
                "embedding": centroid(every),
                "source_ids": list(dict.fromkeys([*old.source_ids, *(m.id for m in every)])),
                "importance": max(old.importance, *(m.importance for m in every)),
                "metadata": {**old.metadata, **_span(every)},
            }
            by_tier.setdefault(old.tier, []).append(records.edited(old, changes, now, bump=True))
        for tier, rows in by_tier.items():
            self.backends.tiers[tier].put(schema.from_memories(self.dim, rows))

    def _new_item(self, w: Work) -> MemoryIn:
        """The consolidated memory of a new cluster (module doc, step 5)."""
        sources = w.sources  # oldest first (the plan sorts them)
        return MemoryIn(
            text=self._summary(sources), namespace=w.namespace, kind=w.rules.into,
            metadata=_span(sources), importance=max(m.importance for m in sources),
            embedding=centroid(sources) if w.centre is None else w.centre,
        )  # fmt: skip

    def _summary(self, sources: Sequence[Source]) -> str:
        texts = [m.text for m in sources]
        body = cut_text(self.summarizer.summarize(texts).strip(), MAX_SUMMARY_CHARS)
        note = span_note(len(sources), sources[0].created_at, sources[-1].created_at)
        return f"{body} {note}" if body else note

    def _known(self, ids: Sequence[str]) -> dict[str, KnownSource]:
        """What growing reads of the sources of `ids`, each from its hottest tier
        (missing ones skipped): columns, not a Memory each (building those was
        most of the read: 100k sources from L3, ~2 of 3.3 s)."""
        out: dict[str, KnownSource] = {}
        todo = list(ids)
        for tier in TIERS:
            rows = self.backends.tiers[tier].get(todo) if todo else None
            if rows is None or not rows.num_rows:
                continue
            us = pc.cast(rows["created_at"], pa.int64()).to_pylist()
            texts, importance = rows["text"].to_pylist(), rows["importance"].to_pylist()
            vecs = schema.vectors(rows)
            for r, id_ in enumerate(rows["id"].to_pylist()):
                out[id_] = KnownSource(id_, texts[r], vecs[r], from_us(us[r]), importance[r])
            todo = [i for i in todo if i not in out]
        return out

    def _log(self, done: list[Work], run: str, now: datetime) -> list[Work]:
        """Log the actions of the units `done`; returns an empty list for the next."""
        self.events.append(run, "consolidate", now, Merges(done))
        return []

    def _move(self, batches: list[Waiting], patch: Patch, report: JobReport) -> bool:
        """Step (c), for many units at once (a move per cluster wrote one L3 file
        per cluster), marking the sources on the way (`patch`). Sources not yet
        moved are safe: a re-run's step 1 finds them in their memory's
        `source_ids` (module doc), so a failed move is reported, not retried.
        Returns whether there was anything to move."""
        for src, dst, ms in batches:
            try:
                ids, nss = [m.id for m in ms], [m.namespace for m in ms]
                report.moved += self.mover.move(src, dst, ids, namespaces=nss, patch=patch)
                failpoint("consolidate.moved")
            except TierMemError as exc:
                report.errors.append(f"{type(exc).__name__}: {exc}")
                log.error("consolidate: moving %d sources %s -> %s: %s", len(ms), src, dst, exc)
        return bool(batches)


def _target(w: Work) -> str | None:
    """The id of a unit's consolidated memory; None for a new one (not made yet)."""
    if w.op == "finish":
        assert w.sources
        into = w.sources[0].metadata.get(CONSOLIDATED_INTO)
        return str(into) if into is not None else (w.target.id if w.target else "")
    if w.op == "new":
        return None
    assert w.target is not None
    return w.target.id


class KnownSource(NamedTuple):
    """A source a grown memory already had, as `_known` reads it (a `Source`)."""

    id: str
    text: str
    embedding: np.ndarray
    created_at: datetime
    importance: float


def _span(sources: Sequence[Source]) -> dict[str, Any]:
    """A consolidated memory's metadata: how many episodes, first and last (oldest first)."""
    return {
        "consolidated_from": len(sources),
        "first_at": sources[0].created_at.isoformat(),
        "last_at": sources[-1].created_at.isoformat(),
    }


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


class _NewRows:
    """New consolidated memories of one tier, built as one table."""

    def __init__(self) -> None:
        self.items: list[MemoryIn] = []
        self.sources: list[list[str]] = []

    def add(self, item: MemoryIn, source_ids: list[str]) -> None:
        self.items.append(item)
        self.sources.append(source_ids)

    def table(self, now: datetime, dim: int) -> pa.Table:
        vecs = np.stack([np.asarray(m.embedding, np.float32) for m in self.items])
        table = records.new_rows(self.items, vecs, now, dim)
        col = pa.array(self.sources, schema.schema(dim).field("source_ids").type)
        return table.set_column(table.schema.get_field_index("source_ids"), "source_ids", col)


Waiting = tuple[TierName, TierName, list[Memory]]  # (source tier, destination, sources)


class _Moves:
    """Sources waiting for step (c), by (source tier, destination), and the mark
    each gets as it moves (`patch`)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.waiting: dict[tuple[TierName, TierName], list[Memory]] = {}
        self.marks: dict[str, str] = {}  # source id -> the memory it is consolidated into

    def add(self, w: Work, target: str) -> None:
        """`w`'s sources that move (those already in `sources_to` were marked in place)."""
        for m in w.sources:
            if m.tier == w.rules.sources_to:
                continue
            self.waiting.setdefault((m.tier, w.rules.sources_to), []).append(m)
            if m.metadata.get(CONSOLIDATED_INTO) != target:
                self.marks[m.id] = target

    def full(self, size_for: Callable[[TierName], int]) -> list[Waiting]:
        """The (src, dst, sources) holding at least a move batch, taken out."""
        ready = [key for key, ms in self.waiting.items() if len(ms) >= size_for(key[1])]
        return [(*key, self.waiting.pop(key)) for key in ready]

    def all(self) -> list[Waiting]:
        """Everything still waiting, taken out."""
        out = [(*key, ms) for key, ms in self.waiting.items()]
        self.waiting = {}
        return out

    def patch(self, rows: pa.Table) -> pa.Table:
        """`rows` with each source's `consolidated_into` set (and `updated_at` now),
        as `records.edited(..., bump=False)` would: the version stays."""
        ids = rows.column("id").to_pylist()
        touched = [i in self.marks for i in ids]
        if not any(touched):
            return rows
        metas = rows.column("metadata").to_pylist()
        made: dict[tuple[str, str], str] = {}  # a cluster's sources share their metadata
        for at, id_ in enumerate(ids):
            if touched[at]:
                key = (metas[at], self.marks[id_])
                metas[at] = made.get(key) or made.setdefault(key, _marked(*key))
        now = pa.scalar(self.now, schema.TS)
        updated = pc.if_else(pa.array(touched), now, rows.column("updated_at"))
        rows = _set(rows, "metadata", pa.array(metas, pa.string()))
        return _set(rows, "updated_at", updated)


def _marked(meta: str, into: str) -> str:
    """Metadata JSON `meta` with `consolidated_into` set to `into`."""
    return schema.dump_metadata({**json.loads(meta), CONSOLIDATED_INTO: into})


def _set(rows: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    return rows.set_column(rows.schema.get_field_index(name), name, values)
