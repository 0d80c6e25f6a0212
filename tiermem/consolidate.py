"""Consolidation: similar old episodes of a namespace become one semantic memory.

For each kind whose policy has ``consolidate:`` (episodic by default), per
namespace, over L1 and L2 (L3 holds what is already cold, usually what was
consolidated before):

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
   `EXACT_MAX` candidates, a throwaway usearch HNSW index above, the
   pairs' cosines always recomputed exactly), so the cost is O(n·k), not
   O(n²) pairs; union-find gives components. A component keeps the
   members whose cosine to its centroid (the normalised mean) is >=
   ``similarity`` (this stops single-link chains); the dropped members go
   back to the pool, and components of >= ``min_cluster`` become clusters.
   Left-over candidates then join a new cluster whose centroid they reach
   (repeated until nothing changes, so a re-run finds nothing to join).
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
(b) put each source with ``consolidated_into`` set, in its tier
[consolidate.marked]; (c) move the sources with the journaled `Mover`
[consolidate.moved], gathered over clusters into the Mover's batches (one
move per cluster wrote one L3 file per cluster: 10,000 files for 100k
episodes in topics of 10). A crash before (a) completes changes nothing visible
(a tier put is atomic: one MULTI/EXEC, one fsynced segment, one manifest
commit), so the re-run redoes the cluster. After (a), the written memory is
complete (never half-made: one atomic row) and its ``source_ids`` cover the
cluster, so the re-run's step 1 finds every unmarked source there and only
marks and moves it: no second memory, no episode consolidated twice. After
(b), marked sources are never candidates again, and step 1 moves those not
yet in ``sources_to``. A crash inside (c) is the Mover's: its journal is
replayed on open, every row stays in exactly one tier. Episodes are never
deleted, only moved, so none is lost. (Step 1 reads consolidated memories
in L1/L2 only: a run that crashed after (a) is assumed to be re-run before
its new memory is demoted.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from tiermem import schema
from tiermem.backends import Backends
from tiermem.lifecycle.policy import ConsolidateRules, Policy
from tiermem.model import KINDS, Action, Memory
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


@dataclass
class Consolidation:
    """A consolidate plan: the work units and their actions."""

    work: list[Work] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def actions(self) -> list[Action]:
        return [
            Action(id=s.id, namespace=w.namespace, action="merge", src=s.tier,
                   dst=w.rules.sources_to, reason=w.reasons[s.id])
            for w in self.work for s in w.sources
        ]  # fmt: skip


def _unit(mat: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(mat, axis=-1, keepdims=True)
    out: np.ndarray = (mat / np.where(norms == 0, 1, norms)).astype(np.float32)
    return out


def centroid(memories: Sequence[Memory]) -> np.ndarray:
    """The normalised mean of the memories' embeddings."""
    mean = np.mean(np.stack([np.asarray(m.embedding, np.float32) for m in memories]), axis=0)
    return _unit(mean)


def _rows(backends: Backends, namespace: str) -> list[Memory]:
    """One copy of each memory of `namespace` in L1 and L2 (newest version, then hotter)."""
    best: dict[str, Memory] = {}
    for tier in ("l1", "l2"):
        for table in backends.tiers[tier].scan(namespace):
            for m in schema.to_memories(table, tier):
                old = best.get(m.id)
                if old is None or winner((old.tier, old.version), (m.tier, m.version)) == (
                    m.tier,
                    m.version,
                ):
                    best[m.id] = m
    return sorted(best.values(), key=lambda m: (m.created_at, m.id))


def plan(backends: Backends, policy: Policy, now: datetime) -> Consolidation:
    """What consolidation would do at `now` (reads L1/L2; changes nothing)."""
    out = Consolidation()
    ruled = [(k, r) for k in KINDS if (r := policy.for_kind(k).consolidate) is not None]
    if not ruled:
        out.notes.append("consolidation is off for every kind in this policy")
        return out
    namespaces = sorted(backends.l1.namespaces() | backends.l2.namespaces())
    for ns in namespaces:
        rows = _rows(backends, ns)
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


def _edges(vecs: np.ndarray, t: float) -> list[tuple[int, int]]:
    """Pairs (i, j) among the top-NEIGHBOURS of each row with exact cosine >= t."""
    n = len(vecs)
    k = min(NEIGHBOURS + 1, n)
    if n <= EXACT_MAX:
        nbrs = np.empty((n, k), dtype=np.int64)
        for start in range(0, n, CHUNK):
            sims = vecs[start : start + CHUNK] @ vecs.T
            nbrs[start : start + len(sims)] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        from usearch.index import Index

        index = Index(ndim=vecs.shape[1], metric="cos")
        index.add(np.arange(n), vecs)
        nbrs = np.asarray(index.search(vecs, k).keys, dtype=np.int64)
    rows = np.repeat(np.arange(n), k)
    cols = nbrs.reshape(-1)
    ok = (cols >= 0) & (cols < n) & (cols != rows)
    rows, cols = rows[ok], cols[ok]
    sims = np.einsum("ij,ij->i", vecs[rows], vecs[cols])  # exact, whatever found them
    keep = sims >= t
    return list(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True))


def _components(members: list[int], edges: list[tuple[int, int]]) -> list[list[int]]:
    parent = {i: i for i in members}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        if a in parent and b in parent:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in members:
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


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
        made = False
        for comp in _components(free, edges):
            if len(comp) < need:
                continue
            c = _unit(vecs[comp].mean(axis=0))
            kept = [i for i in comp if float(vecs[i] @ c) >= t]
            if len(kept) >= need:
                found.append(kept)
                made = True
        if not made:
            break
        taken = {i for cl in found for i in cl}
        free = [i for i in free if i not in taken]
    # left-over candidates join a new cluster whose centroid they reach, until stable
    taken = {i for cl in found for i in cl}
    for _ in range(10):
        if not found:
            break
        cents = _unit(np.stack([vecs[cl].mean(axis=0) for cl in found]))
        moved = False
        for i in [i for i in range(len(pool)) if i not in taken]:
            sims = cents @ vecs[i]
            j = int(sims.argmax())
            if sims[j] >= t:
                found[j].append(i)
                taken.add(i)
                moved = True
        if not moved:
            break
    out = []
    for cl in found:
        cl.sort(key=lambda i: (pool[i].created_at, pool[i].id))
        c = _unit(vecs[cl].mean(axis=0))
        low = min(float(vecs[i] @ c) for i in cl)
        why = f"cluster of {len(cl)} episodes, min similarity {low:.2f} >= {t:g}"
        w = Work("new", ns, rules, [pool[i] for i in cl])
        w.reasons = {pool[i].id: why for i in cl}
        out.append(w)
    return out
