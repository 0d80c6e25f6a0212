"""Consolidation: similar old episodes of a namespace become one semantic memory.

For each kind whose policy has ``consolidate:`` (episodic by default), per
namespace, over its memories in L1 and L2 and its consolidated memories
(kind ``into``, with ``source_ids``) in L3: the episodes consolidated before
are in L3 and stay out of the plan, while a consolidated memory gone cold
can still grow, and finish a crashed run (step 1). L3 is read only for a
namespace whose L1 or L2 holds an episode not yet consolidated:

1. **finish**: episodes already listed in the ``source_ids`` of a current
   consolidated memory (one with ``source_ids``), or marked
   ``consolidated_into`` but not yet in ``sources_to``, are marked and moved;
   no memory is written. This is what makes a crashed run converge.
2. **candidates**: the other episodes of the kind, at least ``min_age`` old
   (by ``created_at``), not superseded, expired, pinned (no rule moves a
   pinned memory colder) or already marked.
3. **grow**: a candidate whose cosine to a current consolidated memory's
   embedding is >= ``similarity`` joins the most similar one: that memory
   gets a new version with ``source_ids`` extended, the text re-summarised
   from all its sources and the embedding re-averaged.
4. **cluster**: the rest are linked to their top-`NEIGHBOURS` neighbours
   with cosine >= ``similarity`` (exact numpy in row chunks up to
   `EXACT_MAX` candidates, a throwaway usearch HNSW index above, whose
   pairs' cosines are recomputed exactly), so the cost is O(n·k), not
   O(n²) pairs; connected components follow (label propagation in numpy).
   A component keeps the members whose cosine to its centroid (the
   normalised mean) is >= ``similarity`` (this stops single-link chains);
   the dropped members go back to the pool, and components of >=
   ``min_cluster`` become clusters. Left-over candidates then join a new
   cluster whose centroid they reach (repeated until nothing changes, so a
   re-run finds nothing to join).
5. **write**: each cluster becomes one ``into`` memory (semantic): text from
   the `Summarizer` plus "(from N episodes, first – last)", embedding = the
   normalised mean of the sources, importance = the max of the sources (a
   cluster matters as much as its most important episode), ``source_ids`` =
   the episodes, metadata ``consolidated_from`` / ``first_at`` / ``last_at``.
   The sources get metadata ``consolidated_into`` = its id and move to
   ``sources_to`` (L3 by default) through the `Mover`.

**Crash safety.** `consolidate_apply.Consolidator` applies a plan. Per
cluster the order is (failpoints in brackets):
(a) write the semantic memory, or the grown version of an existing one,
with its full ``source_ids`` in one durable tier put [consolidate.written];
(b) mark the sources ``consolidated_into`` it: those already in
``sources_to`` by a put in their tier [consolidate.marked], the others in
(c), as they move: the journaled `Mover` writes them to ``sources_to``
with the mark set (``Mover.move(patch=)``, same version) [consolidate.moved].
Moves are gathered over clusters into the Mover's batches (one move per
cluster wrote one L3 file per cluster: 10,000 files for 100k episodes in
topics of 10), and marking on the way spares a second write of every
source (a put per source before its move was a fifth of a run).

A crash before (a) completes changes nothing visible (a tier put is
atomic: one MULTI/EXEC, one fsynced segment, one manifest commit), so the
re-run redoes the cluster. After (a), the written memory is complete
(never half-made: one atomic row) and its ``source_ids`` cover the
cluster, so the re-run's step 1 finds every source not yet in
``sources_to`` there, and only marks and moves it: no second memory, no
episode consolidated twice. A crash inside (c) is the Mover's: its journal
is replayed on open and every row stays in exactly one tier; where both
copies survived, recovery keeps the hotter, unmarked one (equal
versions), which step 1 then finishes. Episodes are never deleted, only
moved, so none is lost. Step 1 finds the consolidated memories in L3 as
well, so a memory written in (a) and demoted before the re-run still
covers its sources. A grown version replaces its row in the tier it is in
(in L3 too: one manifest commit).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np
import pyarrow as pa

from tiermem import schema
from tiermem.backends import Backends
from tiermem.lifecycle.planned import EventRow, LazyActions, action
from tiermem.lifecycle.policy import ConsolidateRules, Policy
from tiermem.model import KINDS, Action, Memory, TierName
from tiermem.moves import winner
from tiermem.summarize import (
    CallableSummarizer,
    ExtractiveSummarizer,
    Summarizer,
    span_note,
)

__all__ = [
    "CallableSummarizer",
    "Consolidation",
    "ExtractiveSummarizer",
    "Merges",
    "Summarizer",
    "plan",
    "span_note",
]

NEIGHBOURS = 32  # neighbours looked at per candidate when clustering
EXACT_MAX = 4_096  # up to this many candidates: exact numpy; above: usearch HNSW
CHUNK = 1_024  # rows per matrix product
MAX_SUMMARY_CHARS = 4_000  # any summarizer's output is cut to this
CONSOLIDATED_INTO = "consolidated_into"


# -- planning --------------------------------------------------------------------------------


@dataclass
class Work:
    """One unit of consolidation: a new cluster, a grown memory, or a finish."""

    op: str  # "new" | "grow" | "finish"
    namespace: str
    rules: ConsolidateRules
    sources: list[Memory]  # episodes to fold in (grow/new) or to mark and move (finish)
    target: Memory | None = None  # the consolidated memory (grow/finish)
    reasons: dict[str, str] = field(default_factory=dict)  # source id -> why
    centre: np.ndarray | None = None  # a new cluster's centroid, as the plan found it


@dataclass
class Consolidation:
    """A consolidate plan: the work units and their actions."""

    work: list[Work] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def actions(self) -> list[Action]:
        return list(Merges(self.work))


class Merges(LazyActions):
    """The merge actions of work units, as event rows (`EventLog.append` writes
    them without an `Action` per source) or, on demand, as `Action`s."""

    def __init__(self, work: Sequence[Work]) -> None:
        self.rows: list[EventRow] = [
            (s.id, w.namespace, "merge", s.tier, w.rules.sources_to, w.reasons[s.id])
            for w in work for s in w.sources
        ]  # fmt: skip

    def __len__(self) -> int:
        return len(self.rows)

    def _at(self, i: int) -> Action:
        id_, ns, verb, src, dst, reason = self.rows[i]
        return action(id_, ns, verb, src, dst, reason)  # type: ignore[arg-type]

    def action_rows(self) -> Iterator[EventRow]:
        """Each action's fields, for the events log."""
        return iter(self.rows)


Ruled = Sequence[tuple[str, ConsolidateRules]]  # (kind, its consolidate rules), per kind


def _unit(mat: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(mat, axis=-1, keepdims=True)
    out: np.ndarray = (mat / np.where(norms == 0, 1, norms)).astype(np.float32)
    return out


class Source(Protocol):
    """What making or growing a consolidated memory reads of a source: a `Memory`,
    or a lighter row (`consolidate_apply.KnownSource`)."""

    @property
    def id(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def embedding(self) -> np.ndarray: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def importance(self) -> float: ...


def centroid(memories: Sequence[Source]) -> np.ndarray:
    """The normalised mean of the memories' embeddings."""
    mean = np.mean(np.stack([np.asarray(m.embedding, np.float32) for m in memories]), axis=0)
    return _unit(mean)


def _rows(backends: Backends, namespace: str, ruled: Ruled) -> list[Memory]:
    """One copy of each memory of `namespace` in L1 and L2 (newest version, then
    hotter), and, where these hold an episode of a consolidating kind not yet
    consolidated, of its consolidated memories of the ``into`` kinds in L3 (they
    may still grow, and a crashed run's memory may have gone cold since)."""
    best: dict[str, Memory] = {}
    hot_warm: tuple[TierName, ...] = ("l1", "l2")
    _keep(best, ((tier, t) for tier in hot_warm for t in backends.tiers[tier].scan(namespace)))
    kinds = {kind for kind, _ in ruled}
    if any(m.kind in kinds and not m.source_ids for m in best.values()):  # else nothing to do
        into = sorted({rules.into for _, rules in ruled})
        _keep(best, (("l3", backends.l3.consolidated(namespace, kind)) for kind in into))
    return sorted(best.values(), key=lambda m: (m.created_at, m.id))


def _keep(best: dict[str, Memory], tables: Iterable[tuple[TierName, pa.Table]]) -> None:
    """Add the rows of `tables` to `best`, one copy per id (`moves.winner`'s)."""
    for tier, table in tables:
        for m in schema.to_memories(table, tier):
            old = best.get(m.id)
            if old is None or winner((old.tier, old.version), (m.tier, m.version)) == (
                m.tier,
                m.version,
            ):
                best[m.id] = m


def plan(backends: Backends, policy: Policy, now: datetime) -> Consolidation:
    """What consolidation would do at `now` (reads L1/L2 and L3's consolidated
    memories; changes nothing)."""
    out = Consolidation()
    ruled = [(k, r) for k in KINDS if (r := policy.for_kind(k).consolidate) is not None]
    if not ruled:
        out.notes.append("consolidation is off for every kind in this policy")
        return out
    namespaces = sorted(backends.l1.namespaces() | backends.l2.namespaces())
    for ns in namespaces:
        rows = _rows(backends, ns, ruled)
        for kind, rules in ruled:
            out.work += _plan_group(ns, kind, rules, rows, now)
    return out


def _plan_group(
    ns: str, kind: str, rules: ConsolidateRules, rows: list[Memory], now: datetime
) -> list[Work]:
    t = rules.similarity
    targets = [m for m in rows if m.kind == rules.into and m.source_ids and not m.superseded_by]
    covering = {sid: m for m in targets for sid in m.source_ids}
    by_id = {m.id: m for m in rows}
    work: list[Work] = []
    finish: dict[str, Work] = {}
    pool: list[Memory] = []
    for m in rows:
        if m.kind != kind or m.source_ids or m.superseded_by:
            continue
        into = m.metadata.get(CONSOLIDATED_INTO)
        if into is not None or m.id in covering:
            tid = str(into) if into is not None else covering[m.id].id
            if into is not None and m.tier == rules.sources_to:
                continue  # done
            w = finish.setdefault(tid, Work("finish", ns, rules, [], by_id.get(tid)))
            w.sources.append(m)
            w.reasons[m.id] = f"already consolidated into {tid}; finishing (mark and move)"
            continue
        if m.pinned or (m.expires_at is not None and m.expires_at <= now):
            continue
        if now - m.created_at >= rules.min_age:
            pool.append(m)
    work += finish.values()
    # grow: candidates that reach an existing consolidated memory
    grown: dict[str, Work] = {}
    if targets and pool:
        tmat = _unit(np.stack([np.asarray(m.embedding, np.float32) for m in targets]))
        left = []
        for m, (j, s) in zip(pool, _best(pool, tmat), strict=True):
            if s < t:
                left.append(m)
                continue
            tgt = targets[j]
            w = grown.setdefault(tgt.id, Work("grow", ns, rules, [], tgt))
            w.sources.append(m)
            w.reasons[m.id] = f"joins consolidated memory {tgt.id} (similarity {s:.2f} >= {t:g})"
        pool = left
    work += grown.values()
    work += _clusters(ns, rules, pool)
    return work


def _best(pool: Sequence[Memory], mat: np.ndarray) -> list[tuple[int, float]]:
    """Per memory of `pool`, the best row of `mat` (unit rows) and its cosine."""
    out: list[tuple[int, float]] = []
    vecs = _unit(np.stack([np.asarray(m.embedding, np.float32) for m in pool]))
    for start in range(0, len(vecs), CHUNK):
        sims = vecs[start : start + CHUNK] @ mat.T
        idx = sims.argmax(axis=1)
        out += [(int(j), float(sims[i, j])) for i, j in enumerate(idx)]
    return out


def _edges(vecs: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a[i], b[i]) among the top-NEIGHBOURS of each row with exact cosine >= t."""
    n = len(vecs)
    k = min(NEIGHBOURS + 1, n)
    if n <= EXACT_MAX:
        nbrs = np.empty((n, k), dtype=np.int64)
        sims = np.empty((n, k), dtype=np.float32)
        for start in range(0, n, CHUNK):
            part = vecs[start : start + CHUNK] @ vecs.T
            top = np.argpartition(-part, k - 1, axis=1)[:, :k]
            nbrs[start : start + len(part)] = top
            sims[start : start + len(part)] = np.take_along_axis(part, top, axis=1)
    else:
        from usearch.index import Index

        index = Index(ndim=vecs.shape[1], metric="cos")
        index.add(np.arange(n), vecs)
        nbrs = np.asarray(index.search(vecs, k).keys, dtype=np.int64)
        sims = None  # recomputed exactly below: HNSW distances are approximate
    rows = np.repeat(np.arange(n), k)
    cols = nbrs.reshape(-1)
    ok = (cols >= 0) & (cols < n) & (cols != rows)
    rows, cols = rows[ok], cols[ok]
    exact = np.einsum("ij,ij->i", vecs[rows], vecs[cols]) if sims is None else sims.reshape(-1)[ok]
    keep = exact >= t
    return rows[keep], cols[keep]


def _components(
    n: int, members: list[int], edges: tuple[np.ndarray, np.ndarray]
) -> list[list[int]]:
    """The connected components among `members` (ascending, of rows 0..n-1) by
    `edges`, each ascending, ordered by their smallest member. Labels propagate
    as the smallest index reachable, with pointer jumping: a few numpy passes
    for clusters of any shape (a Python union-find was a tenth of consolidation)."""
    if not members:
        return []
    idx = np.asarray(members, dtype=np.int64)
    inside = np.zeros(n, dtype=bool)
    inside[idx] = True
    a, b = edges
    both = inside[a] & inside[b]
    a, b = a[both], b[both]
    labels = np.arange(n, dtype=np.int64)
    while True:
        low = np.minimum(labels[a], labels[b])
        new = labels.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]  # jump: a label's own label is smaller or equal
        if np.array_equal(new, labels):
            break
        labels = new
    mine = labels[idx]
    order = np.argsort(mine, kind="stable")
    cuts = np.flatnonzero(np.diff(mine[order])) + 1
    return [part.tolist() for part in np.split(idx[order], cuts)]


def _clusters(ns: str, rules: ConsolidateRules, pool: list[Memory]) -> list[Work]:
    """New clusters among `pool` (module doc, step 4)."""
    t, need = rules.similarity, rules.min_cluster
    if len(pool) < need:
        return []
    vecs = _unit(np.stack([np.asarray(m.embedding, np.float32) for m in pool]))
    edges = _edges(vecs, t)
    free = list(range(len(pool)))
    found: list[list[int]] = []
    while True:
        big = [c for c in _components(len(pool), free, edges) if len(c) >= need]
        made = [kept for kept, _, _ in _near_centre(vecs, big, t) if len(kept) >= need]
        if not made:
            break
        found += made
        taken = {i for cl in made for i in cl}
        free = [i for i in free if i not in taken]
    # left-over candidates join a new cluster whose centroid they reach, until stable
    left = np.asarray(free, dtype=np.int64)
    for _ in range(10):
        if not found or not len(left):
            break
        sims = vecs[left] @ _centroids(vecs, found)[0].T
        best = sims.argmax(axis=1)
        joins = sims[np.arange(len(left)), best] >= t
        if not joins.any():
            break
        for i, j in zip(left[joins].tolist(), best[joins].tolist(), strict=True):
            found[j].append(i)
        left = left[~joins]
    out = []
    for cl in found:
        cl.sort()  # pool is oldest first
    for cl, (_, low, centre) in zip(found, _near_centre(vecs, found, -2.0), strict=True):
        why = f"cluster of {len(cl)} episodes, min similarity {low:.2f} >= {t:g}"
        w = Work("new", ns, rules, [pool[i] for i in cl], centre=centre)
        w.reasons = {pool[i].id: why for i in cl}
        out.append(w)
    return out


def _near_centre(
    vecs: np.ndarray, groups: list[list[int]], t: float
) -> list[tuple[list[int], float, np.ndarray]]:
    """Per group of rows: the members whose cosine to the group's centroid (its
    normalised mean) is >= t, the lowest member's cosine, and the centroid; all
    groups in a few numpy calls."""
    if not groups:
        return []
    cents, flat, starts, sizes = _centroids(vecs, groups)
    sims = np.einsum("ij,ij->i", vecs[flat], np.repeat(cents, sizes, axis=0))
    lows = np.minimum.reduceat(sims, starts)
    ok = sims >= t
    ends = (starts + sizes).tolist()
    return [
        (flat[a:b][ok[a:b]].tolist(), float(low), centre)
        for a, b, low, centre in zip(starts.tolist(), ends, lows, cents, strict=True)
    ]


def _centroids(
    vecs: np.ndarray, groups: list[list[int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each group's centroid (its rows' normalised mean; groups non-empty), and
    the layout it was summed over: the rows concatenated, each group's start
    and size."""
    sizes = np.array([len(g) for g in groups])
    flat = np.concatenate([np.asarray(g, dtype=np.int64) for g in groups])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return _unit(np.add.reduceat(vecs[flat], starts, axis=0)), flat, starts, sizes
