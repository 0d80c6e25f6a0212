"""The Protocol every tier implements, and what moves between them.

Rows cross tier boundaries as `pyarrow.Table`s of `tiermem.schema.schema(dim)`.
A tier stores, finds and removes rows; it never decides policy (what to
move, when): that belongs to the lifecycle and the executor (`moves.py`).

Contract shared by all tiers (checked by tests/test_tier_behaviour.py):

- ``put`` is an upsert keyed by ``id`` and is durable when it returns
  (the crash ordering of moves depends on it).
- ``get`` returns only the ids it holds, in any order, with current access
  stats; ``delete`` returns how many it removed and ignores unknown ids.
- ``search`` ranks one namespace by cosine similarity to a unit vector and
  returns at most ``k`` rows passing the filter, best first, with a float64
  ``_score`` column appended. It never reads another namespace. ``find``
  answers the same search for the read path (`tiermem.tiers.found`).
- ``touch`` records an access (last_accessed_at = at, access_count += 1).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

import numpy as np
import pyarrow as pa

from tiermem.filters import Filter
from tiermem.model import TierName, TierStats
from tiermem.tiers.found import SCORE, Found

__all__ = ["SCORE", "Found", "Tier"]


class Tier(Protocol):
    """A storage tier: put/get/delete/search/scan/stats, plus housekeeping."""

    name: TierName

    def put(self, table: pa.Table) -> None:
        """Insert or replace these rows; durable on return."""

    def get(self, ids: Sequence[str]) -> pa.Table:
        """The rows of the ids held here (missing ids absent)."""

    def delete(self, ids: Sequence[str]) -> int:
        """Remove these ids; returns how many were present."""

    def search(self, namespace: str, vector: np.ndarray, k: int, flt: Filter) -> pa.Table:
        """Top-k rows of `namespace` by cosine similarity, with a `_score` column."""

    def find(self, namespace: str, vector: np.ndarray, k: int, flt: Filter) -> Found:
        """The same top-k as `search`, as the read path consumes it."""

    def scan(self, namespace: str | None = None) -> Iterator[pa.Table]:
        """Every row (of one namespace, or all), in batches."""

    def stats(self) -> TierStats:
        """Count and approximate bytes."""

    def namespaces(self) -> set[str]:
        """Namespaces with at least one row here."""

    def forget(self, namespace: str) -> int:
        """Remove every row of a namespace; returns how many."""

    def touch(self, ids: Sequence[str], at: datetime) -> None:
        """Record one access of each id held here."""

    def close(self) -> None:
        """Release resources (persisting derived state where useful)."""
