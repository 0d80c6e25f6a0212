"""Single rows of an Arrow table as Python values, read straight from its buffers.

A search returns ~10 rows. Getting them through Arrow (`take` or `slice`,
then `to_pylist` per column) costs a compute call per column and per
payload part, ~300 µs for 10 rows of L2; reading the buffers costs
~0.3 µs a value. Only the column types of `tiermem.schema` are handled:
strings, int64, float64, bool, timestamps (returned as int µs) and lists
of strings.

>>> import pyarrow as pa
>>> t = pa.table({"a": ["x", None, "zz"], "b": [1, 2, 3]})
>>> RowReader(t).row(2)
{'a': 'zz', 'b': 3}
>>> RowReader(t).row(1)
{'a': None, 'b': 2}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

Getter = Callable[[int], Any]


class RowReader:
    """Reads rows of a table's `names` columns (default all). Reads the buffers
    of a one-chunk column in place; a column of several chunks is combined once
    (a copy), so give it one-chunk tables (L2's payload parts are)."""

    def __init__(self, table: pa.Table, names: Sequence[str] | None = None) -> None:
        self.names = list(table.schema.names if names is None else names)
        self._getters = [_getter(_one_chunk(table.column(n))) for n in self.names]

    def row(self, r: int) -> dict[str, Any]:
        """Row `r` as {column: value}; timestamps as int microseconds."""
        return {n: get(r) for n, get in zip(self.names, self._getters, strict=True)}

    def getter(self, name: str) -> Getter:
        """The function from row number to column `name`'s value (as `row` gives it)."""
        return self._getters[self.names.index(name)]


def _one_chunk(col: pa.ChunkedArray) -> pa.Array:
    # combine_chunks copies even a single chunk: it would double L2's payload
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def _getter(arr: pa.Array) -> Getter:
    """A function from row number to the Python value of `arr` there."""
    if len(arr) == 0:  # buffers may be absent
        return _no_rows
    if arr.null_count == len(arr):  # e.g. expires_at, mostly unset: no buffer read
        return _null
    value = _values(arr)
    if arr.null_count == 0:
        return value
    bits = memoryview(arr.buffers()[0])  # validity bitmap, LSB first
    off = arr.offset

    def nullable(r: int) -> Any:
        i = r + off
        return value(r) if bits[i >> 3] >> (i & 7) & 1 else None

    return nullable


def _values(arr: pa.Array) -> Getter:
    """The getter for non-null values of `arr` (nulls are checked by the caller)."""
    t, off = arr.type, arr.offset
    if pa.types.is_string(t):
        return _strings(arr)
    if pa.types.is_list(t) and pa.types.is_string(t.value_type):
        starts = memoryview(arr.buffers()[1]).cast("i")
        item = _getter(arr.values)
        return lambda r: [item(j) for j in range(starts[r + off], starts[r + off + 1])]
    if pa.types.is_boolean(t):
        bits = memoryview(arr.buffers()[1])
        return lambda r: bool(bits[(r + off) >> 3] >> ((r + off) & 7) & 1)
    if pa.types.is_float64(t):
        floats = memoryview(arr.buffers()[1]).cast("d")
        return lambda r: floats[r + off]
    if pa.types.is_int64(t) or (pa.types.is_timestamp(t) and t.unit == "us"):
        ints = memoryview(arr.buffers()[1]).cast("q")
        return lambda r: ints[r + off]
    raise TypeError(f"no row reader for Arrow type {t}")


def _null(r: int) -> None:
    return None


def _no_rows(r: int) -> Any:
    raise IndexError(f"row {r} of an empty column")


def _strings(arr: pa.Array) -> Getter:
    """Getter for a utf8 array (offsets are int32)."""
    starts = memoryview(arr.buffers()[1]).cast("i")
    data = arr.buffers()[2]
    raw = memoryview(data) if data is not None else memoryview(b"")
    off = arr.offset
    return lambda r: str(raw[starts[r + off] : starts[r + off + 1]], "utf-8")
