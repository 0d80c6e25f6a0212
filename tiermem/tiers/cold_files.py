"""Writing the L3 cold tier's files: data files at a vector precision, delete files.

Data files store `schema(dim)` except for the embedding. New files store each
vector as one fixed-size binary value of little-endian floats (float32, or
float16 with ``l3.vector_precision``), PLAIN and uncompressed: a search reads
the column with one copy and scores it in numpy, where decoding a Parquet
list column (DuckDB or pyarrow alike) cost ~60% of a tenant's top-10, and
zstd saves little on floats (third benchmark pass, benchmarks/RESULTS.md).
Files written before keep the list layout (``fixed_size_list<float>``). A
file's manifest entry names its layout and precision; every read returns
float32 whatever a file holds (`decode_embedding`), and the SQL views show
``FLOAT[dim]`` for both (sql.py).

>>> storage_schema(4, "float16").field("embedding").type
FixedSizeBinaryType(fixed_size_binary[8])
>>> storage_schema(4, "float32", "list").field("embedding").type
FixedSizeListType(fixed_size_list<item: float>[4])
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import numpy as np
import pyarrow as pa

from tiermem.errors import TierMemError, TierUnavailable
from tiermem.schema import COLUMNS, embedding_array, schema, vectors
from tiermem.tiers import manifest as mf
from tiermem.tiers.manifest import VectorLayout, VectorPrecision

PAIRS = pa.schema([("id", pa.string()), ("file", pa.string())])
_ARROW_TYPES = {"float32": pa.float32(), "float16": pa.float16()}
_NUMPY_TYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


@contextmanager
def io_errors(what: str, where: Path | str) -> Iterator[None]:
    """Translate backend failures into TierUnavailable naming the path."""
    try:
        yield
    except TierMemError:
        raise
    except (OSError, duckdb.Error, pa.ArrowException) as exc:
        raise TierUnavailable(f"L3 {what} failed at {where}: {exc}") from exc


def storage_schema(
    dim: int, precision: VectorPrecision, layout: VectorLayout = "bytes"
) -> pa.Schema:
    """`schema(dim)` with the embedding as stored: `layout`, elements at `precision`."""
    s = schema(dim)
    i = s.get_field_index("embedding")
    if layout == "bytes":
        vec = pa.binary(dim * _NUMPY_TYPES[precision].itemsize)
    else:
        vec = pa.list_(_ARROW_TYPES[precision], dim)
    return s.set(i, pa.field("embedding", vec, nullable=False))


def data_options(
    row_group_size: int,
    precision: VectorPrecision,
    layout: VectorLayout = "bytes",
    zstd_level: int = 3,
) -> dict[str, Any]:
    """pyarrow write options of data files.

    Dictionary-encoding unique floats only to fall back costs ~2x on read, so
    the embedding has none. In the list layout, byte-stream-split makes
    float32 ~10% smaller at the same read speed; DuckDB 2.0 cannot read it on
    float16 ("BYTE_STREAM_SPLIT encoding is only supported for FLOAT, DOUBLE,
    INT32 or INT64"), so float16 stays PLAIN. Keep dictionaries on every other
    column: DuckDB 2.0 answers `IS NULL` wrongly on a PLAIN string column
    whose min == max (measured; see test_superseded_filter_on_constant_column).
    """
    rest = [c for c in COLUMNS if c != "embedding"]
    options: dict[str, Any] = {
        "row_group_size": row_group_size,
        "use_dictionary": rest,
        "compression_level": zstd_level,
    }
    if layout == "bytes":
        options["compression"] = {"embedding": "none", **dict.fromkeys(rest, "zstd")}
        options["compression_level"] = dict.fromkeys(rest, zstd_level)
        options["column_encoding"] = {"embedding": "PLAIN"}
        # min/max of 1.5 KB blobs prune nothing and cost ~6 KB a row group
        options["write_statistics"] = rest
    elif precision == "float32":
        options["column_encoding"] = {"embedding.list.element": "BYTE_STREAM_SPLIT"}
    return options


def to_storage(rows: pa.Table, precision: VectorPrecision, layout: VectorLayout) -> pa.Table:
    """`rows` (schema(dim)) as stored: `storage_schema(dim, precision, layout)`."""
    dim = rows.schema.field("embedding").type.list_size
    target = storage_schema(dim, precision, layout)
    if layout == "list":
        return rows.cast(target)
    mat = np.ascontiguousarray(vectors(rows), dtype=_NUMPY_TYPES[precision])
    field = target.field("embedding")
    blobs = pa.FixedSizeBinaryArray.from_buffers(field.type, len(mat), [None, pa.py_buffer(mat)])
    return rows.set_column(target.get_field_index("embedding"), field, blobs).cast(target)


def blob_vectors(arr: pa.Array, dim: int) -> np.ndarray:
    """float32 [n, dim] of embeddings stored as bytes (`fixed_size_binary` from
    pyarrow, `binary` from DuckDB), float32 or float16 by their width. Zero-copy
    (read-only) for float32 when every value has the same width."""
    n = len(arr)
    if n == 0:
        return np.zeros((0, dim), np.float32)
    if pa.types.is_fixed_size_binary(arr.type):
        width = arr.type.byte_width
        start, data = arr.offset * width, arr.buffers()[1]
    else:
        kind = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
        offsets = np.frombuffer(arr.buffers()[1], kind, n + 1, arr.offset * kind().itemsize)
        widths = np.diff(offsets)
        if (widths != widths[0]).any():  # files of both precisions in one result
            return np.concatenate([blob_vectors(arr.slice(i, 1), dim) for i in range(n)])
        width, start, data = int(widths[0]), int(offsets[0]), arr.buffers()[2]
    dtype = {4 * dim: _NUMPY_TYPES["float32"], 2 * dim: _NUMPY_TYPES["float16"]}.get(width)
    if dtype is None:
        raise TierUnavailable(f"L3 vector of {width} bytes; this store has dim {dim}")
    raw = np.frombuffer(data, np.uint8, n * width, start)
    out: np.ndarray = raw.view(dtype).reshape(n, dim).astype(np.float32, copy=False)
    return out


def decode_embedding(table: pa.Table, dim: int) -> pa.Table:
    """`table` with a bytes-layout embedding column turned into float32 vectors."""
    i = table.schema.get_field_index("embedding")
    typ = table.schema.field(i).type if i >= 0 else None
    if typ is None or not (pa.types.is_binary(typ) or pa.types.is_fixed_size_binary(typ)):
        return table
    mats = [blob_vectors(chunk, dim) for chunk in table.column(i).chunks]
    mat = mats[0] if len(mats) == 1 else np.concatenate([np.zeros((0, dim), np.float32), *mats])
    return table.set_column(i, "embedding", embedding_array(mat))


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
        layout: VectorLayout = "bytes",
    ) -> None:
        self.root = root
        self.precision: VectorPrecision = precision
        self.layout: VectorLayout = layout  # "list": only to write old-layout files in tests
        self._zstd_level = zstd_level
        self._options = data_options(row_group_size, precision, layout, zstd_level)

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
            options.setdefault("compression_level", self._zstd_level)
            mf.write_parquet(path, table, **options)

    def data(self, namespace: str, rows: pa.Table) -> mf.DataFile:
        """A new data file of `rows` (schema(dim), one namespace), at the set precision."""
        # Sorted by id, so each row group's id statistics are tight.
        rows = rows.sort_by("id")
        path = self.ns_dir(namespace) / f"part-{uuid.uuid4()}.parquet"
        with io_errors("write", path):
            stored = to_storage(rows, self.precision, self.layout)
        self._write(path, stored, **self._options)
        entry = mf.DataFile.describe(self.root, path, namespace, rows)
        update = {"vector_precision": self.precision, "vector_layout": self.layout}
        return entry.model_copy(update=update)

    def deletes(self, by_ns: dict[str, list[tuple[str, str]]]) -> list[mf.DeleteFile]:
        """One delete file per namespace of its (id, relative data file) pairs."""
        out = []
        for ns, pairs in sorted(by_ns.items()):
            path = self.ns_dir(ns) / f"del-{uuid.uuid4()}.parquet"
            ids, files = zip(*pairs, strict=True)
            self._write(path, pa.table([pa.array(ids), pa.array(files)], PAIRS))
            out.append(mf.DeleteFile(path=self.rel(path), namespace=ns, rows=len(pairs)))
        return out
