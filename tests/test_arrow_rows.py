"""RowReader against Arrow's own conversion, on arbitrary columns of the types
the tiers store: nulls anywhere, sliced arrays (non-zero offsets), multiple chunks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiermem.tiers.arrow_rows import RowReader

TS = pa.timestamp("us", tz="UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

COLUMNS = {
    "s": (pa.string(), st.text(max_size=8)),
    "i": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "f": (pa.float64(), st.floats(allow_nan=False)),
    "b": (pa.bool_(), st.booleans()),
    "t": (TS, st.integers(-(10**15), 10**16)),  # µs since the epoch
    "l": (pa.list_(pa.string()), st.lists(st.none() | st.text(max_size=4), max_size=3)),
}


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 12))
    cols = {}
    for name, (typ, values) in COLUMNS.items():
        cells = draw(st.lists(st.none() | values, min_size=n + 3, max_size=n + 3))
        if name == "t":
            cells = [None if c is None else EPOCH + timedelta(microseconds=c) for c in cells]
        cut = draw(st.integers(0, 3))  # a slice: the arrays start at offset `cut`
        arr = pa.array(cells, type=typ).slice(cut, n)
        split = draw(st.integers(0, n))  # and maybe two chunks
        cols[name] = pa.chunked_array([arr.slice(0, split), arr.slice(split)], type=typ)
    return pa.table(cols)


@given(tables())
def test_rows_equal_arrow_conversion(table: pa.Table) -> None:
    reader = RowReader(table)
    for r, want in enumerate(table.to_pylist()):
        got = reader.row(r)
        if want["t"] is not None:
            want["t"] = (want["t"] - EPOCH) // timedelta(microseconds=1)
        assert got == want


def test_empty_column_has_no_rows() -> None:
    empty = RowReader(pa.table({"s": pa.array([], pa.string())}))
    with pytest.raises(IndexError):
        empty.row(0)


def test_named_columns_only_and_unknown_types_refused() -> None:
    t = pa.table({"a": [1], "v": pa.array([[1.0]], pa.list_(pa.float32(), 1))})
    assert RowReader(t, ["a"]).row(0) == {"a": 1}
    with pytest.raises(TypeError, match="no row reader"):
        RowReader(t)


def test_one_chunk_columns_are_read_in_place() -> None:
    """No copy: L2 keeps one reader per payload part, for as long as the part."""
    arr = pa.array(["a", "bc"] * 500)
    reader = RowReader(pa.table({"s": pa.chunked_array([arr])}))
    before = pa.total_allocated_bytes()
    kept = RowReader(pa.table({"s": pa.chunked_array([arr])}))
    assert pa.total_allocated_bytes() == before
    assert kept.row(0) == {"s": "a"}
    assert reader.row(1) == {"s": "bc"}
