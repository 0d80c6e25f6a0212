"""Turning validated input into stored rows, and edits into new versions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from tiermem import schema
from tiermem.embed import Embedder, normalize
from tiermem.errors import ValidationError
from tiermem.ids import new_id, to_us
from tiermem.model import Memory, MemoryIn


def check_vector(vec: np.ndarray, dim: int, field: str = "embedding") -> np.ndarray:
    """A unit-length copy of `vec`, or ValidationError if its dimension is wrong."""
    if vec.shape != (dim,):
        raise ValidationError(f"has dimension {vec.shape[0]}, the store uses {dim}", field=field)
    vec = vec.astype(np.float32, copy=False)
    norm = float(np.sqrt(np.dot(vec, vec)))  # one BLAS dot, no temporaries
    if norm == 0:
        raise ValidationError("must not be all zeros", field=field)
    unit: np.ndarray = vec / np.float32(norm)
    return unit


def embed_items(items: Sequence[MemoryIn], embedder: Embedder, dim: int) -> np.ndarray:
    """Vectors for `items`: given ones checked, the rest embedded in one call.

    Given vectors are checked and normalised in one vectorised pass (same
    errors as `check_vector`, for the first offending item).
    """
    out = np.zeros((len(items), dim), dtype=np.float32)
    todo = [i for i, m in enumerate(items) if m.embedding is None]
    given = [i for i, m in enumerate(items) if m.embedding is not None]
    if given:
        given_vecs = [v for i in given if (v := items[i].embedding) is not None]
        if any(v.shape != (dim,) for v in given_vecs):
            for v in given_vecs:  # raise the one-item error for the first bad shape
                check_vector(v, dim)
        mat = np.stack(given_vecs).astype(np.float32, copy=False)
        norms = np.sqrt(np.einsum("ij,ij->i", mat, mat))
        if not norms.all():
            raise ValidationError("must not be all zeros", field="embedding")
        out[given] = mat / norms[:, None]
    if todo:
        vecs = np.asarray(embedder.embed([items[i].text for i in todo]), dtype=np.float32)
        if vecs.shape != (len(todo), dim):
            raise ValidationError(
                f"the embedder returned shape {vecs.shape}, expected ({len(todo)}, {dim})",
                field="embedding",
            )
        out[todo] = normalize(vecs)
    return out


def new_rows(items: Sequence[MemoryIn], vecs: np.ndarray, now: datetime, dim: int) -> pa.Table:
    """Rows for brand-new memories (version 1, never accessed since creation).

    Timestamps go in as integer µs, and the columns every new row shares are
    built whole: converting aware datetimes one by one cost ~1 µs a value.
    """
    n, now_us = len(items), to_us(now)
    given = [schema.as_utc(m.created_at) if m.created_at else None for m in items]
    created = [now_us if at is None else to_us(at) for at in given]
    expires = [to_us(now + m.ttl) if m.ttl else None for m in items]
    cols: dict[str, Any] = {
        "id": [new_id(at) for at in given],
        "namespace": [m.namespace for m in items],
        "kind": [m.kind for m in items],
        "text": [m.text for m in items],
        "metadata": [schema.dump_metadata(m.metadata) for m in items],
        "importance": [float(m.importance) for m in items],
        "created_at": _timestamps(created),
        "access_count": pa.array(np.zeros(n, np.int64)),
        "expires_at": _timestamps(expires),
        "pinned": [m.pinned for m in items],
        "version": pa.array(np.ones(n, np.int64)),
        "source_ids": pa.array([[]] * n, pa.list_(pa.string())),
        "superseded_by": pa.nulls(n, pa.string()),
        "name": [m.name for m in items],
        "tiered_at": _timestamps([now_us] * n),
        "embedding": vecs,
    }
    cols["updated_at"] = cols["last_accessed_at"] = cols["created_at"]
    return schema.from_columns(dim, cols)


def _timestamps(us: Sequence[int | None]) -> pa.Array:
    return pa.array(us, pa.int64()).cast(schema.TS)


def edited(old: Memory, changes: dict[str, Any], now: datetime, *, bump: bool) -> Memory:
    """`old` with `changes` applied; `bump` makes it a new version (content edits)."""
    fields = {**old.__dict__, **changes, "updated_at": now}
    if bump:
        fields["version"] = old.version + 1
    return Memory.model_construct(**fields)
