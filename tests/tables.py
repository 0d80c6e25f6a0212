"""Test helpers shared by the tier suites: build Arrow tables of memories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from tiermem import schema as sch

DIM = 8
T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    m = rng.standard_normal((n, DIM)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def make_table(ns: str, n: int, seed: int = 0, **overrides: list[Any]) -> pa.Table:
    """n rows of namespace `ns` with random unit vectors; `overrides` replace columns."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {
        "id": [f"{ns}-{seed}-{i}" for i in range(n)],
        "namespace": [ns] * n,
        "kind": ["episodic"] * n,
        "text": [f"memory {i} ☕ naïve 日本" for i in range(n)],
        "embedding": unit(rng, n),
        "metadata": [
            sch.dump_metadata({"i": i, "lang": "en" if i % 2 else "fr"}) for i in range(n)
        ],
        "importance": [0.1 + i / (n + 1) for i in range(n)],
        "created_at": [T0 + timedelta(seconds=i) for i in range(n)],
        "updated_at": [T0 + timedelta(seconds=i) for i in range(n)],
        "last_accessed_at": [T0 + timedelta(seconds=i) for i in range(n)],
        "access_count": [i for i in range(n)],
        "expires_at": [None] * n,
        "pinned": [i % 3 == 0 for i in range(n)],
        "version": [1] * n,
        "source_ids": [[] for _ in range(n)],
        "superseded_by": [None] * n,
        "name": [None] * n,
        "tiered_at": [T0 + timedelta(seconds=i) for i in range(n)],
    }
    cols.update(overrides)
    return sch.from_columns(DIM, cols)


def by_id(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in table.to_pylist()}
