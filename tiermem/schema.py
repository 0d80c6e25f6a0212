"""The one columnar shape of a memory, shared by every tier.

Tiers exchange `pyarrow.Table`s with `schema(dim)`: moves copy batches
between tiers without touching Python objects, and L2/L3 store exactly
these columns. `tier` is not stored; it is where a row was read from.

>>> s = schema(4)
>>> s.field("embedding").type
FixedSizeListType(fixed_size_list<item: float>[4])
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from tiermem.ids import as_datetime
from tiermem.model import Memory, TierName

TS = pa.timestamp("us", tz="UTC")
# Columns whose values change on access only; tiers may keep them outside
# their append-only storage (see ARCHITECTURE.md, "access stats").
ACCESS_COLUMNS = ("last_accessed_at", "access_count")


@functools.cache  # immutable, and built on every conversion: ~20 µs each time
def schema(dim: int) -> pa.Schema:
    """The Arrow schema of stored memories with `dim`-dimensional vectors."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("namespace", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("metadata", pa.string(), nullable=False),  # JSON object
            pa.field("importance", pa.float64(), nullable=False),
            pa.field("created_at", TS, nullable=False),
            pa.field("updated_at", TS, nullable=False),
            pa.field("last_accessed_at", TS, nullable=False),
            pa.field("access_count", pa.int64(), nullable=False),
            pa.field("expires_at", TS),
            pa.field("pinned", pa.bool_(), nullable=False),
            pa.field("version", pa.int64(), nullable=False),
            pa.field("source_ids", pa.list_(pa.string()), nullable=False),
            pa.field("superseded_by", pa.string()),
            pa.field("name", pa.string()),
            pa.field("tiered_at", TS, nullable=False),  # when it entered its current tier
        ]
    )


COLUMNS: tuple[str, ...] = tuple(schema(1).names)
TIME_COLUMNS = tuple(n for n in COLUMNS if schema(1).field(n).type == TS)
_PLAIN = tuple(n for n in COLUMNS if n not in TIME_COLUMNS and n != "embedding")
MEMORY_FIELDS = tuple(Memory.model_fields)  # the order Memory's own constructor gives


def dump_metadata(meta: dict[str, Any]) -> str:
    """Canonical JSON for metadata (sorted keys, compact)."""
    return json.dumps(meta, separators=(",", ":"), sort_keys=True)


def vectors(table: pa.Table) -> np.ndarray:
    """The embedding column as a float32 [n, dim] matrix: a read-only view of the
    column's buffer when it has one chunk, else one copy."""
    col = table.column("embedding")
    mats = chunk_matrices(col)
    if len(mats) == 1:
        return mats[0]
    if not mats:
        return np.zeros((0, col.type.list_size), dtype=np.float32)
    out: np.ndarray = np.concatenate(mats)
    return out


def chunk_matrices(column: pa.ChunkedArray) -> list[np.ndarray]:
    """A fixed-size-list float32 column as one [rows, dim] matrix per chunk.

    Views of the column's own buffers (of a memory-mapped file at load), not
    copies: merging the chunks first (`combine_chunks` copies even a single
    chunk) put a transient copy of every loaded vector in Arrow's default
    pool, which kept part of it resident after it was freed (100k memories:
    2,629 B/memory of L2 RSS with it, 2,524 without).
    """
    out = []
    for chunk in column.chunks:
        dim = chunk.type.list_size
        flat = chunk.values.to_numpy(zero_copy_only=False)
        flat = flat[chunk.offset * dim : (chunk.offset + len(chunk)) * dim]
        out.append(flat.reshape(len(chunk), dim))
    return out


def embedding_array(mat: np.ndarray) -> pa.FixedSizeListArray:
    """A float32 [n, dim] matrix as an Arrow fixed-size-list array."""
    mat = np.ascontiguousarray(mat, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(mat.reshape(-1)), mat.shape[1])


def from_columns(dim: int, cols: dict[str, Any]) -> pa.Table:
    """Build a table from column lists (or Arrow arrays of the column's type);
    `embedding` may be a float32 matrix."""
    s = schema(dim)
    arrays = []
    for field in s:
        values = cols[field.name]
        if field.name == "embedding":
            arrays.append(embedding_array(np.asarray(values).reshape(-1, dim)))
        elif isinstance(values, pa.Array):
            arrays.append(values)
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=s)


def from_memories(dim: int, memories: Sequence[Memory]) -> pa.Table:
    """Memories as a table (the inverse of `to_memories`)."""
    cols: dict[str, Any] = {name: [] for name in COLUMNS}
    for m in memories:
        d = m.__dict__
        for name in COLUMNS:
            cols[name].append(d[name])
    cols["metadata"] = [dump_metadata(x) for x in cols["metadata"]]
    cols["embedding"] = np.stack(cols["embedding"]) if memories else np.zeros((0, dim), np.float32)
    return from_columns(dim, cols)


def to_memories(
    table: pa.Table, tier: TierName, *, accessed_at: datetime | None = None
) -> list[Memory]:
    """Rows of a table as Memory objects, all marked with `tier`.

    With `accessed_at`, each memory comes back with that access recorded
    (last_accessed_at set, access_count + 1), as reads return them.
    """
    if table.num_rows == 0:
        return []
    mat = vectors(table)
    cols = {n: _values(table.column(n)) for n in _PLAIN}
    for n in TIME_COLUMNS:
        cols[n] = datetimes(table.column(n))
    cols["metadata"] = [{} if x == "{}" else json.loads(x) for x in cols["metadata"]]
    if accessed_at is not None:
        cols["last_accessed_at"] = [accessed_at] * table.num_rows
        cols["access_count"] = [c + 1 for c in cols["access_count"]]
    cols["embedding"] = list(mat.copy())  # one copy; rows are views into it
    cols["tier"] = [tier] * table.num_rows
    ordered = [cols[n] for n in MEMORY_FIELDS]
    return [
        Memory.trusted(dict(zip(MEMORY_FIELDS, values, strict=True)))
        for values in zip(*ordered, strict=True)
    ]


def _values(col: pa.ChunkedArray) -> list[Any]:
    """A column's values as Python objects (all-null columns without conversion)."""
    return [None] * len(col) if col.null_count == len(col) else col.to_pylist()


def datetimes(col: pa.ChunkedArray) -> list[datetime | None]:
    """A timestamp column as aware datetimes (None for nulls).

    Arrow's own tz-aware conversion costs ~4 µs a value; going through
    int64 microseconds costs ~0.3 µs, which matters on every search. Equal
    values share one (immutable) datetime (`ids.as_datetime`): rows added in
    one batch share their times, so a bulk read converts each time once.
    """
    if col.null_count == len(col):  # e.g. expires_at, mostly unset
        return [None] * len(col)
    us = col.to_numpy().astype(np.int64).tolist()
    if col.null_count == 0:
        return [as_datetime(x) for x in us]
    valid = col.is_valid().to_pylist()
    return [as_datetime(x) if ok else None for x, ok in zip(us, valid, strict=True)]


def concat(tables: Iterable[pa.Table], dim: int) -> pa.Table:
    """Concatenate tables of `schema(dim)` (an empty table if none)."""
    parts = [t for t in tables if t.num_rows]
    if not parts:
        return schema(dim).empty_table()
    return pa.concat_tables(parts).combine_chunks()


def row_bytes(table: pa.Table) -> int:
    """Approximate stored bytes of a table's rows."""
    return int(table.nbytes)


def as_utc(dt: datetime) -> datetime:
    """`dt` (aware) in UTC; the tiers store UTC only."""
    from datetime import UTC

    return dt.astimezone(UTC)
