"""Writing the L3 cold tier's files: data files at a vector precision, delete files.

Data files store `schema(dim)` except that the embedding may be kept as
float16 (``l3.vector_precision``). A file says its own precision twice: in
its Parquet schema (``fixed_size_list<halffloat>`` or ``<float>``) and in its
manifest entry. Readers never need either: DuckDB reads both element types
as ``FLOAT[]`` (the views cast to ``FLOAT[dim]``) and pyarrow reads are cast
to `schema(dim)`, so any mix of files reads back as float32.

>>> storage_schema(4, "float16").field("embedding").type
FixedSizeListType(fixed_size_list<item: halffloat>[4])
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import pyarrow as pa

from tiermem.errors import TierMemError, TierUnavailable
from tiermem.schema import COLUMNS, schema
from tiermem.tiers import manifest as mf
from tiermem.tiers.manifest import VectorPrecision

PAIRS = pa.schema([("id", pa.string()), ("file", pa.string())])
_ARROW_TYPES = {"float32": pa.float32(), "float16": pa.float16()}


@contextmanager
def io_errors(what: str, where: Path | str) -> Iterator[None]:
    """Translate backend failures into TierUnavailable naming the path."""
    try:
        yield
    except TierMemError:
        raise
    except (OSError, duckdb.Error, pa.ArrowException) as exc:
        raise TierUnavailable(f"L3 {what} failed at {where}: {exc}") from exc


def storage_schema(dim: int, precision: VectorPrecision) -> pa.Schema:
    """`schema(dim)` with the embedding's elements stored at `precision`."""
    s = schema(dim)
    i = s.get_field_index("embedding")
    vec = pa.list_(_ARROW_TYPES[precision], dim)
    return s.set(i, pa.field("embedding", vec, nullable=False))


def data_options(row_group_size: int, precision: VectorPrecision) -> dict[str, Any]:
    """pyarrow write options of data files.

    Dictionary-encoding unique floats only to fall back costs ~2x on read, so
    the embedding has none. Byte-stream-split makes float32 ~10% smaller at
    the same read speed; DuckDB 2.0 cannot read it on float16 (a fixed-length
    byte array: "BYTE_STREAM_SPLIT encoding is only supported for FLOAT,
    DOUBLE, INT32 or INT64"), so float16 stays PLAIN. Keep dictionaries on
    every other column: DuckDB 2.0 answers `IS NULL` wrongly on a PLAIN string
    column whose min == max (measured; see
    test_superseded_filter_on_constant_column).
    """
    options: dict[str, Any] = {
        "row_group_size": row_group_size,
        "use_dictionary": [c for c in COLUMNS if c != "embedding"],
    }
    if precision == "float32":
        options["column_encoding"] = {"embedding.list.element": "BYTE_STREAM_SPLIT"}
    return options


class FileWriter:
    """Writes durable data and delete files under `root` (nothing is committed here)."""

    def __init__(
        self,
        root: Path,
        dim: int,
        *,
        zstd_level: int,
        row_group_size: int,
        precision: VectorPrecision,
    ) -> None:
        self.root = root
        self.precision: VectorPrecision = precision
        self._zstd_level = zstd_level
        self._storage = storage_schema(dim, precision)
        self._options = data_options(row_group_size, precision)

    def ns_dir(self, namespace: str) -> Path:
        """The directory of one namespace's files (percent-encoded name)."""
        return self.root / "data" / quote(namespace, safe="")

    def rel(self, path: str | Path) -> str:
        """`path` relative to the tier root, POSIX separators (as the manifest stores it)."""
        return Path(path).relative_to(self.root).as_posix()

    def _write(self, path: Path, table: pa.Table, **options: Any) -> None:
        """A durable Parquet file at `path` (temp name, fsync, rename, fsync dir)."""
        with io_errors("write", path):
            path.parent.mkdir(parents=True, exist_ok=True)
            mf.write_parquet(path, table, compression_level=self._zstd_level, **options)

    def data(self, namespace: str, rows: pa.Table) -> mf.DataFile:
        """A new data file of `rows` (schema(dim), one namespace), at the set precision."""
        # Sorted by id, so each row group's id statistics are tight.
        rows = rows.sort_by("id")
        path = self.ns_dir(namespace) / f"part-{uuid.uuid4()}.parquet"
        with io_errors("write", path):
            stored = rows.cast(self._storage)
        self._write(path, stored, **self._options)
        entry = mf.DataFile.describe(self.root, path, namespace, rows)
        return entry.model_copy(update={"vector_precision": self.precision})

    def deletes(self, by_ns: dict[str, list[tuple[str, str]]]) -> list[mf.DeleteFile]:
        """One delete file per namespace of its (id, relative data file) pairs."""
        out = []
        for ns, pairs in sorted(by_ns.items()):
            path = self.ns_dir(ns) / f"del-{uuid.uuid4()}.parquet"
            ids, files = zip(*pairs, strict=True)
            self._write(path, pa.table([pa.array(ids), pa.array(files)], PAIRS))
            out.append(mf.DeleteFile(path=self.rel(path), namespace=ns, rows=len(pairs)))
        return out
