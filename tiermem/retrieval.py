"""Merging per-tier search results: duplicates, scores, ranking.

Each tier returns its own top-k with a cosine `_score`. Merging keeps one
hit per id (the copy `moves.winner` picks: newest version, then hottest
tier, so a memory caught mid-move is returned once) and ranks by score.

`score="blended"` re-ranks like Generative Agents (Park et al., 2023):
relevance, recency of last access (exponential decay per hour) and
importance, weighted and summed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

import pyarrow as pa

from tiermem import schema
from tiermem.model import Hit, TierName
from tiermem.moves import winner
from tiermem.tiers.base import SCORE

ScoreMode = Literal["relevance", "blended"]
RECENCY_DECAY_PER_HOUR = 0.995
BLEND_WEIGHTS = {"relevance": 0.6, "recency": 0.2, "importance": 0.2}


def merge(results: Iterable[tuple[TierName, pa.Table]]) -> list[Hit]:
    """One hit per id across tiers, best score first."""
    best: dict[str, Hit] = {}
    for tier, table in results:
        scores = table.column(SCORE).to_pylist()
        for mem, score in zip(schema.to_memories(table, tier), scores, strict=True):
            prev = best.get(mem.id)
            if prev is not None:
                keep = winner((prev.tier, prev.memory.version), (tier, mem.version))
                if keep == (prev.tier, prev.memory.version):
                    continue
            best[mem.id] = Hit(memory=mem, score=float(score), tier=tier)
    return sorted(best.values(), key=lambda h: h.score, reverse=True)


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
