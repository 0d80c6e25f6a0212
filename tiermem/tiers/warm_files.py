"""The files of an L2 namespace: durable writes, Arrow IPC, the tombstone log.

Every write goes to a temp name, is fsynced, renamed over its target, and the
directory is fsynced; tombstones are appended and fsynced. Errors become
`TierUnavailable` naming the path (`io_errors`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiermem.errors import TierUnavailable
from tiermem.tiers.warm_index import fsync_path

NAME_FILE = "namespace"


@contextmanager
def io_errors(what: str, path: Path) -> Iterator[None]:
    """Translate file, Arrow and usearch failures into TierUnavailable naming `path`."""
    try:
        yield
    except (OSError, pa.ArrowException, RuntimeError) as exc:
        raise TierUnavailable(f"L2 warm tier: {what} failed at {path}: {exc}") from exc


def write_durably(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write via `write(file)` to a temp name, fsync, rename over `path`, fsync the dir."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    fsync_path(path.parent, directory=True)


def write_ipc(path: Path, table: pa.Table) -> None:
    """`table` as an Arrow IPC file at `path`, durably."""

    def write(fh: BinaryIO) -> None:
        with pa.ipc.new_file(fh, table.schema) as writer:
            writer.write_table(table)

    write_durably(path, write)


def map_ipc(path: Path) -> pa.Table:
    """An Arrow IPC file as a memory-mapped table, for reading at load only.

    Callers copy what they keep (`detached`), so the mapping, and its fd,
    go once the table does; reading into the heap instead left the freed
    file buffers resident as fragmentation.
    """
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def detached(table: pa.Table) -> pa.Table:
    """A one-chunk copy of `table` in the system allocator (malloc).

    Long-lived payload stays out of Arrow's default pool (mimalloc), which
    kept far more resident than it held: loading the memory suite's 100k
    rows (333 B of payload each) took 2,524 B/memory of RSS with the copy
    in mimalloc, 2,273 with it in malloc, which gives large buffers their
    own mappings.
    """
    pool = pa.system_memory_pool()
    whole = pa.array(np.arange(table.num_rows, dtype=np.int64))
    out: pa.Table = pc.take(table, whole, memory_pool=pool)
    return out.combine_chunks(memory_pool=pool)


def write_namespace_name(path: Path, name: str) -> None:
    """Record the namespace string in its directory."""
    write_durably(path / NAME_FILE, lambda fh: fh.write(name.encode()))


def read_tombstones(path: Path, read_only: bool) -> list[tuple[str, int]]:
    """(id, seq) entries; a torn last line (no newline) is ignored, malformed lines too."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n") + 1
    if end < len(data) and not read_only:
        os.truncate(path, end)  # so the next append starts on a fresh line
    out = []
    for line in data[:end].decode("utf-8", "replace").splitlines():
        id_, tab, seq = line.partition("\t")
        if tab and seq.isdigit():
            out.append((id_, int(seq)))
    return out


def append_tombstones(path: Path, entries: list[tuple[str, int]]) -> None:
    """Append (id, seq) lines durably (the directory too when the file is new)."""
    body = "".join(f"{i}\t{s}\n" for i, s in entries).encode()
    with io_errors("tombstone append", path):
        new = not path.exists()
        with open(path, "ab") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        if new:
            fsync_path(path.parent, directory=True)
