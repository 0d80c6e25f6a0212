"""The L3 bookkeeping files: the manifest (the one commit point of the cold
tier), atomic Parquet writes, and the checkpointed access stats.

``root/manifest.json`` names every live data file (with the per-file stats
used for pruning) and every delete file. A file under ``root/data`` that the
manifest does not name is an orphan: written by a put/delete that crashed
before its commit, or left by a forget that crashed after its commit. Either
way it was never (or is no longer) visible, so it is safe to remove.

A commit is ``write manifest.json.tmp -> fsync -> os.replace -> fsync dir``:
readers see either the old or the new manifest, never a torn one, and once
``commit`` returns the new version survives a power loss.

>>> m = Manifest(dim=4)
>>> m.version, m.live_rows("ns")
(0, 0)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from tiermem.errors import ConfigError, TierUnavailable

MANIFEST = "manifest.json"
ACCESS = "access.parquet"
# 2: data files may use the bytes vector layout (`DataFile.vector_layout`); a
# format-1 manifest (list layout only) loads as is and is written back as 2.
FORMAT = 2
# How a data file stores embedding elements (``l3.vector_precision``); every
# reader gets float32 back whatever a file holds.
VectorPrecision = Literal["float32", "float16"]
# How a data file lays its vectors out: "bytes" (each vector one fixed-size
# binary value of little-endian floats, uncompressed: cold_files.py) since
# the third benchmark pass; "list" (a Parquet list of floats) before it.
VectorLayout = Literal["list", "bytes"]


class DataFile(BaseModel):
    """One immutable Parquet file of one namespace, with its pruning stats."""

    path: str  # relative to the tier root, POSIX separators
    namespace: str
    rows: int
    bytes: int
    min_id: str
    max_id: str
    min_created_at: datetime
    max_created_at: datetime
    # How the file stores vectors (its Parquet schema says so too); manifests
    # written before the setting existed hold float32 files only.
    vector_precision: VectorPrecision = "float32"
    vector_layout: VectorLayout = "list"  # entries written before layouts existed

    @classmethod
    def describe(cls, root: Path, path: Path, namespace: str, rows: pa.Table) -> DataFile:
        """The entry of the just-written file `path` holding `rows` (sorted by id)."""
        created = rows["created_at"]
        return cls(
            path=path.relative_to(root).as_posix(),
            namespace=namespace,
            rows=rows.num_rows,
            bytes=path.stat().st_size,
            min_id=rows["id"][0].as_py(),
            max_id=rows["id"][-1].as_py(),
            min_created_at=pc.min(created).as_py(),
            max_created_at=pc.max(created).as_py(),
        )


class DeleteFile(BaseModel):
    """A Parquet file of (id, file) pairs: each kills one id in one data file."""

    path: str
    namespace: str
    rows: int


class Manifest(BaseModel):
    """The committed state of the cold tier. `version` grows by one per commit."""

    format: int = FORMAT
    version: int = 0
    dim: int
    data: list[DataFile] = Field(default_factory=list)
    deletes: list[DeleteFile] = Field(default_factory=list)

    def paths(self) -> set[str]:
        """Every file (data and delete) the manifest names."""
        return {f.path for f in self.data} | {f.path for f in self.deletes}

    def live_rows(self, namespace: str) -> int:
        """Rows written to `namespace` (before deletes)."""
        return sum(f.rows for f in self.data if f.namespace == namespace)


def load(root: Path, dim: int) -> Manifest:
    """The committed manifest of `root` (an empty one if none was ever committed).

    Raises ConfigError when the stored dimension differs from `dim`: the
    dimension defines the on-disk format and is stored with the data.
    """
    path = root / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Manifest(dim=dim)
    except OSError as exc:
        raise TierUnavailable(f"L3: cannot read {path}: {exc}") from exc
    try:
        manifest = Manifest.model_validate_json(raw)
    except PydanticValidationError as exc:
        raise TierUnavailable(f"L3: corrupt manifest {path}: {exc}") from exc
    if manifest.format > FORMAT:
        raise ConfigError(
            f"L3 at {root} has manifest format {manifest.format}, written by a newer "
            f"tiermem; this one reads formats up to {FORMAT}: upgrade tiermem"
        )
    if manifest.dim != dim:
        raise ConfigError(f"L3 at {root} stores dim={manifest.dim}, but dim={dim} was given")
    return manifest


def commit(root: Path, manifest: Manifest) -> Manifest:
    """Durably replace the manifest with `manifest` at version + 1; returns it.

    Every file it names must already be durable (fsynced and renamed): the
    rename of the manifest is what makes them visible.
    """
    new = manifest.model_copy(update={"version": manifest.version + 1, "format": FORMAT})
    data = new.model_dump_json(indent=1).encode()
    write_atomic(root / MANIFEST, lambda f: f.write(data))
    return new


def read_deletes(root: Path, manifest: Manifest) -> dict[str, set[str]]:
    """The delete entries of `manifest`: absolute data file -> killed ids."""
    dead: dict[str, set[str]] = {}
    for d in manifest.deletes:
        try:
            pairs = pq.read_table(root / d.path, columns=["id", "file"])
        except (OSError, pa.ArrowException) as exc:
            raise TierUnavailable(f"L3: cannot read delete file {root / d.path}: {exc}") from exc
        for id_, rel in zip(pairs["id"].to_pylist(), pairs["file"].to_pylist(), strict=True):
            dead.setdefault(str(root / rel), set()).add(id_)
    return dead


def remove_orphans(root: Path, manifest: Manifest) -> None:
    """Delete files under root/data that `manifest` does not name, and temp files.

    They come from a crash before a commit (never visible) or after a
    forget/compaction commit (no longer visible), so removing them is safe.
    """
    named = manifest.paths()
    try:
        for tmp in root.glob("*.tmp"):
            tmp.unlink()
        # Reverse order visits a directory's files before the directory.
        for path in sorted((root / "data").rglob("*"), reverse=True):
            if path.is_file() and path.relative_to(root).as_posix() not in named:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    except OSError as exc:
        raise TierUnavailable(f"L3: orphan cleanup failed under {root}: {exc}") from exc


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` via a temp file: write, fsync, rename, fsync the directory.

    A crash leaves either no file or the complete file, plus possibly a
    ``.tmp`` orphan that the next writable open removes.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise TierUnavailable(f"L3: cannot write {path}: {exc}") from exc


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or unlink inside it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet(path: Path, table: pa.Table, **options: Any) -> None:
    """A durable zstd Parquet file at `path` (via `write_atomic`); `options` go to pyarrow."""
    opts = {"compression": "zstd", **options}
    write_atomic(path, lambda f: pq.write_table(table, f, **opts))


class AccessStats:
    """Access stats of L3 rows, kept beside the immutable data files.

    Maps id -> (absolute data file, last access in µs, access count). An entry
    applies only to the row of that id in that file, so a stale entry (an id
    since deleted and put again elsewhere) can never override a newer row.
    Persisted by `save` only: a crash loses the accesses since the last save.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._by_id: dict[str, tuple[str, int, int]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def load(self, live: set[str]) -> None:
        """Read ``access.parquet``, keeping entries of the `live` (absolute) files."""
        self._by_id = {}
        path = self._root / ACCESS
        if not path.exists():
            return
        try:
            t = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise TierUnavailable(f"L3: cannot read {path}: {exc}") from exc
        cols = (t[c].to_pylist() for c in ("id", "file", "last_us", "count"))
        for id_, rel, last, count in zip(*cols, strict=True):
            if str(self._root / rel) in live:
                self._by_id[id_] = (str(self._root / rel), last, count)

    def save(self, live: set[str]) -> None:
        """Durably write the entries of the `live` files to ``access.parquet``."""
        items = [(i, e) for i, e in self._by_id.items() if e[0] in live]
        rel = [Path(e[0]).relative_to(self._root).as_posix() for _, e in items]
        t = pa.table(
            {
                "id": pa.array([i for i, _ in items], pa.string()),
                "file": pa.array(rel, pa.string()),
                "last_us": pa.array([e[1] for _, e in items], pa.int64()),
                "count": pa.array([e[2] for _, e in items], pa.int64()),
            }
        )
        write_parquet(self._root / ACCESS, t)

    def apply(self, rows: pa.Table) -> pa.Table:
        """`rows` (with a `filename` column) with the current stats overriding theirs."""
        if not self._by_id or rows.num_rows == 0:
            return rows
        last = rows["last_accessed_at"].cast(pa.int64()).to_numpy().copy()
        count = rows["access_count"].to_numpy().copy()
        pairs = zip(rows["id"].to_pylist(), rows["filename"].to_pylist(), strict=True)
        hits = 0
        for i, (id_, file) in enumerate(pairs):
            entry = self._by_id.get(id_)
            if entry is not None and entry[0] == file:
                last[i], count[i], hits = entry[1], entry[2], hits + 1
        if not hits:
            return rows
        ts = rows.schema.field("last_accessed_at").type
        rows = rows.set_column(
            rows.schema.get_field_index("last_accessed_at"),
            "last_accessed_at",
            pa.array(last, pa.int64()).cast(ts),
        )
        i = rows.schema.get_field_index("access_count")
        return rows.set_column(i, "access_count", pa.array(count, pa.int64()))

    def record(self, rows: pa.Table, at_us: int) -> None:
        """One access at `at_us` of each row (id, filename, current access_count)."""
        cols = (rows[c].to_pylist() for c in ("id", "filename", "access_count"))
        for id_, file, count in zip(*cols, strict=True):
            self._by_id[id_] = (file, at_us, count + 1)

    def drop(self, ids: Iterable[str] = (), files: set[str] | None = None) -> None:
        """Forget the entries of `ids`, and of every id living in `files`."""
        for id_ in ids:
            self._by_id.pop(id_, None)
        if files:
            self._by_id = {i: e for i, e in self._by_id.items() if e[0] not in files}

    def move(self, files: set[str], to: str) -> None:
        """Entries of rows in `files` now refer to `to` (after a compaction)."""
        self._by_id = {i: ((to, *e[1:]) if e[0] in files else e) for i, e in self._by_id.items()}
