"""Checking the arguments of reads: kinds, tiers, times, query vectors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import numpy as np

from tiermem import records
from tiermem.embed import Embedder
from tiermem.errors import ValidationError
from tiermem.model import KINDS, TIERS, MemoryIn, TierName

MAX_K = 1_000


def kinds(value: Iterable[str] | None) -> frozenset[str] | None:
    """A set of known kinds (a single string counts as one), or None for all."""
    if value is None:
        return None
    wanted = frozenset([value] if isinstance(value, str) else value)
    bad = wanted - set(KINDS)
    if bad:
        raise ValidationError(f"unknown kind(s) {sorted(bad)}; use {list(KINDS)}", field="kinds")
    return wanted


def tier(name: str) -> TierName:
    """`name` as a tier name, or ValidationError."""
    for t in TIERS:
        if t == name:
            return t
    raise ValidationError(f"unknown tier {name!r}; use l1, l2 or l3", field="tier")


def aware(dt: datetime | None, field: str) -> datetime | None:
    """`dt` if None or timezone-aware, else ValidationError."""
    if dt is not None and (not isinstance(dt, datetime) or dt.utcoffset() is None):
        raise ValidationError("must be a timezone-aware datetime", field=field)
    return dt


def k(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_K:
        raise ValidationError(f"must be an integer from 1 to {MAX_K}", field="k")
    return value


def query_vector(
    query: str | Sequence[float] | np.ndarray, embedder: Embedder, dim: int
) -> np.ndarray:
    """A unit query vector from text (embedded) or a vector (checked)."""
    if isinstance(query, str):
        if not query.strip():
            raise ValidationError("must not be empty", field="query")
        item = MemoryIn(text=query, namespace="q")
        vec: np.ndarray = records.embed_items([item], embedder, dim)[0]
        return vec
    try:
        arr = np.asarray(query, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValidationError("must be a string or a vector", field="query") from None
    if arr.ndim != 1 or not np.isfinite(arr).all():
        raise ValidationError("must be a 1-d vector of finite numbers", field="query")
    return records.check_vector(arr, dim, field="query")
