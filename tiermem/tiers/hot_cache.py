"""L1 search: exact cosine over an in-process copy of each namespace.

A namespace's copy (rows, vectors, norms) is valid while its Redis
version counter (`Keys.version`, bumped by every L1 write) is unchanged.
How that is checked is `l1.cache`:

- ``"tracking"`` (default): Redis pushes an invalidation when a version
  key we read changes (`tracking.VersionTracker`), so a search whose copy
  is current makes no round trip at all;
- ``"validate"``: one GET of the version key per search.

Tracking falls back to validating if Redis refuses it or its listener fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import redis

from tiermem import schema as sch
from tiermem.filters import Filter
from tiermem.tiers.base import SCORE
from tiermem.tiers.found import Found, MemoryReader, RowsFound
from tiermem.tiers.keys import Keys
from tiermem.tiers.tracking import VersionTracker

log = logging.getLogger(__name__)
CacheMode = Literal["tracking", "validate"]


@dataclass
class _Cached:
    """One namespace as of `version` (and tracker generation `gen`)."""

    version: Any
    gen: int
    table: pa.Table
    matrix: np.ndarray
    norms: np.ndarray
    none: pa.Table | None = None  # the no-hit result, built once (most L1s miss most namespaces)
    reader: MemoryReader | None = None  # built on the first `find` with hits

    def found(self, top: np.ndarray, scores: np.ndarray) -> RowsFound:
        """Rows `top` of the copy as the read path's result (`tiers.found`)."""
        if self.reader is None:
            self.reader = MemoryReader(self.table)
        rd = self.reader
        return RowsFound("l1", [(rd, i) for i in top.tolist()], self.matrix[top], scores.tolist())

    def empty(self) -> pa.Table:
        """A result with no rows: the table's schema plus `_score`."""
        if self.none is None:
            self.none = self.table.slice(0, 0).append_column(SCORE, pa.array([], pa.float64()))
        return self.none


class SearchCache:
    """Per-namespace copies of L1 for exact search, kept current by version."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        load: Callable[[str], pa.Table],
        mode: CacheMode = "tracking",
    ) -> None:
        self.client, self.keys, self._load = client, keys, load
        self._entries: dict[str, _Cached] = {}
        self._want_tracking = mode == "tracking"
        self._tracker: VersionTracker | None = None

    def search(self, namespace: str, vector: np.ndarray, k: int, flt: Filter) -> pa.Table:
        """Exact top-k cosine over the namespace's rows passing `flt`, with `_score`."""
        cached, top, scores = self._top(namespace, vector, k, flt)
        if not len(top):
            return cached.empty()
        rows = cached.table.take(pa.array(top))
        return rows.append_column(SCORE, pa.array(scores, pa.float64()))

    def find(self, namespace: str, vector: np.ndarray, k: int, flt: Filter) -> Found:
        """The same top-k as `search`, as Python rows (see `tiers.found`)."""
        cached, top, scores = self._top(namespace, vector, k, flt)
        return cached.found(top, scores)

    def _top(
        self, namespace: str, vector: np.ndarray, k: int, flt: Filter
    ) -> tuple[_Cached, np.ndarray, np.ndarray]:
        """The namespace's copy, and the row numbers and scores of its top-k."""
        cached = self._current(namespace)
        none = np.zeros(0, dtype=np.int64), np.zeros(0)
        if cached.table.num_rows == 0 or k <= 0:
            return cached, *none
        idx = np.flatnonzero(flt.mask(cached.table))
        k = min(k, len(idx))
        if k == 0:
            return cached, *none
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        denom = cached.norms[idx] * float(np.linalg.norm(q))
        dots = (cached.matrix[idx] @ q).astype(np.float64)
        scores = np.divide(dots, denom, out=np.zeros(len(idx)), where=denom > 0)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return cached, idx[top], scores[top]

    def changed(self, namespaces: Iterable[str]) -> None:
        """This process wrote to these namespaces: their next search revalidates.

        Only tracking needs telling: validating already reads the version each time.
        """
        if self._tracker is not None:
            self._tracker.changed(namespaces)

    def drop(self, namespace: str) -> None:
        """Forget the namespace's copy."""
        self._entries.pop(namespace, None)

    def close(self) -> None:
        """Drop every copy and stop tracking."""
        self._entries.clear()
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

    def _current(self, namespace: str) -> _Cached:
        """The namespace's copy, reloaded if its version moved.

        The generation is read before the version, and the version before
        the rows: a write racing either leaves a copy that looks older than
        it is (reloaded again next time), never one that looks newer.
        """
        tracker = self._tracking()
        entry = self._entries.get(namespace)
        gen = tracker.generation(namespace) if tracker else 0
        if tracker and tracker.healthy and entry is not None and entry.gen == gen:
            return entry
        key = self.keys.version(namespace)
        version = tracker.read_version(namespace, key) if tracker else self.client.get(key)
        if entry is not None and entry.version == version:
            entry.gen = gen
            return entry
        table = self._load(namespace)
        matrix = np.ascontiguousarray(sch.vectors(table), dtype=np.float32)
        norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
        entry = _Cached(version, gen, table, matrix, norms)
        self._entries[namespace] = entry
        return entry

    def _tracking(self) -> VersionTracker | None:
        """The tracker if tracking is wanted and working (started on first use)."""
        if self._tracker is not None and not self._tracker.healthy:
            self._tracker.close()
            self._tracker, self._want_tracking = None, False
        if self._tracker is None and self._want_tracking:
            try:
                self._tracker = VersionTracker(self.client)
            except redis.ResponseError as exc:  # e.g. Redis < 6: no CLIENT TRACKING
                log.warning("L1 client tracking unavailable (%s); validating every search", exc)
                self._want_tracking = False
        return self._tracker
