"""Merging per-tier search results: duplicates, scores, ranking.

Each tier returns its own top-k with cosine scores (a `tiers.found.Found`). Ranking keeps one
candidate per id (the copy `moves.winner` picks: newest version, then hottest
tier, so a memory caught mid-move is returned once) and ranks by score.

`score="blended"` re-ranks like Generative Agents (Park et al., 2023):
relevance, recency of last access (exponential decay per hour) and
importance, weighted and summed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal, NamedTuple

from tiermem.model import Hit, TierName
from tiermem.moves import winner
from tiermem.tiers.found import Found

ScoreMode = Literal["relevance", "blended"]
RECENCY_DECAY_PER_HOUR = 0.995
BLEND_WEIGHTS = {"relevance": 0.6, "recency": 0.2, "importance": 0.2}


class Candidate(NamedTuple):
    """One tier's copy of a search result: a rank in that tier's `Found`.

    A NamedTuple, not a frozen dataclass: a search builds one per tier hit,
    and a frozen dataclass's __init__ costs ~1 µs a field.
    """

    id: str
    score: float
    tier: TierName
    version: int
    found: Found
    rank: int


def rank(results: Iterable[Found]) -> list[Candidate]:
    """One candidate per id across tiers, best score first.

    Works on the ids, versions and scores only, so Memory objects are built
    for the k results returned (`hits`), not for every tier's top-k.
    """
    best: dict[str, Candidate] = {}
    for found in results:
        tier = found.tier
        ranked = zip(found.ids, found.versions, found.scores, strict=True)
        for i, (id_, version, score) in enumerate(ranked):
            prev = best.get(id_)
            if prev is None or winner((prev.tier, prev.version), (tier, version)) != (
                (prev.tier, prev.version)
            ):
                best[id_] = Candidate(id_, score, tier, version, found, i)
    return sorted(best.values(), key=lambda c: c.score, reverse=True)


def hits(candidates: Sequence[Candidate], accessed_at: datetime | None = None) -> list[Hit]:
    """The candidates as Hits, in order (see `schema.to_memories` for `accessed_at`)."""
    by_found: dict[int, list[int]] = {}
    for i, c in enumerate(candidates):
        by_found.setdefault(id(c.found), []).append(i)
    out: list[Hit | None] = [None] * len(candidates)
    for positions in by_found.values():
        first = candidates[positions[0]]
        ranks = [candidates[i].rank for i in positions]
        memories = first.found.memories(ranks, accessed_at)
        for i, mem in zip(positions, memories, strict=True):
            out[i] = Hit.trusted(mem, candidates[i].score, candidates[i].tier)
    return [h for h in out if h is not None]


def blended(hits: list[Hit], now: datetime) -> list[Hit]:
    """Hits re-scored by relevance, recency and importance, best first."""
    w = BLEND_WEIGHTS
    out = []
    for h in hits:
        hours = max((now - h.memory.last_accessed_at).total_seconds(), 0.0) / 3600
        recency = RECENCY_DECAY_PER_HOUR**hours
        score = w["relevance"] * h.score + w["recency"] * recency
        score += w["importance"] * h.memory.importance
        out.append(h.model_copy(update={"score": score}))
    return sorted(out, key=lambda h: h.score, reverse=True)
