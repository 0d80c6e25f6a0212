"""What a tier's search hands the read path: ids, versions and scores, best
first, and Memory objects only for the ranks the engine returns.

`Tier.search` returns an Arrow table (the tier contract, used by checks and
tests); the read path calls `Tier.find`, which L1 and L3 answer by wrapping
that table (`TableFound`) and L2 answers from Python rows read straight out
of its payload (`RowsFound`), skipping the table a 10-row result does not need.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from tiermem import schema
from tiermem.model import Memory, TierName

SCORE = "_score"


class Found:
    """One tier's top-k for a search, best first."""

    def __init__(
        self, tier: TierName, ids: list[str], versions: list[int], scores: list[float]
    ) -> None:
        self.tier, self.ids, self.versions, self.scores = tier, ids, versions, scores

    def memories(self, ranks: Sequence[int], accessed_at: datetime | None) -> list[Memory]:
        """Memory objects of these ranks, in order (`accessed_at`: as `schema.to_memories`)."""
        raise NotImplementedError


class TableFound(Found):
    """A search result table (with `_score`)."""

    def __init__(self, tier: TierName, table: pa.Table) -> None:
        cols = (table.column(c).to_pylist() for c in ("id", "version", SCORE))
        super().__init__(tier, *cols)
        self.table = table.drop_columns([SCORE])

    def memories(self, ranks: Sequence[int], accessed_at: datetime | None) -> list[Memory]:
        table = self.table
        if list(ranks) != list(range(table.num_rows)):  # usually all rows, in order
            table = table.take(pa.array(ranks, pa.int64()))
        return schema.to_memories(table, self.tier, accessed_at=accessed_at)


class RowsFound(Found):
    """Rows as `arrow_rows.RowReader` gives them, plus their vectors and scores."""

    def __init__(
        self,
        tier: TierName,
        rows: list[dict[str, Any]],
        vectors: np.ndarray,
        scores: Sequence[float],
    ) -> None:
        ids = [r["id"] for r in rows]
        versions = [r["version"] for r in rows]
        super().__init__(tier, ids, versions, [float(s) for s in scores])
        self.rows, self.vectors = rows, vectors

    def memories(self, ranks: Sequence[int], accessed_at: datetime | None) -> list[Memory]:
        seen: dict[int, datetime] = {}
        return [
            schema.row_memory(dict(self.rows[i]), self.vectors[i], self.tier, accessed_at, seen)
            for i in ranks
        ]
