"""Export and import of memories: Parquet (zstd) or JSON Lines.

An export holds every field of every memory except `tier` (where it lived):
ids, times, access stats, versions, supersession, pins and vectors, so an
import into a fresh store gives back identical memories.

- ``.parquet``: rows of `tiermem.schema.schema(dim)` (zstd), the store's own
  columnar shape; the file's schema metadata records ``tiermem.dim``.
- ``.jsonl``: one JSON object per line; ``embedding`` is a list of floats,
  ``metadata`` an object, times ISO-8601 in UTC (``...Z``).

Exports are written to a temp name and renamed, so a failed export leaves no
partial file. A memory found in two tiers (a move interrupted by a crash,
before recovery) is exported once, from the hottest tier.

Imports validate the whole file first (namespace, text, vector dimension,
types and ranges, like `add`) and write nothing if any row is bad: the
`RowError` names the row (line number for JSON Lines, 1-based row for
Parquet) and the field. Rows are then inserted directly into one tier (L1
unless told otherwise) keeping their ids and every field. An id already in
the store (any tier) is skipped and counted, never replaced. Imports bypass
the policy's capacity limits; the lifecycle jobs rebalance afterwards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from tiermem import inputs, schema
from tiermem.errors import ValidationError
from tiermem.fields import check_namespace
from tiermem.import_rows import RowError, validate_row
from tiermem.model import TierName

if TYPE_CHECKING:
    from tiermem.engine import Engine

Progress = Callable[[int, int], None]  # (done, total)
Format = Literal["parquet", "jsonl"]
BATCH = 10_000
_TS = ("created_at", "updated_at", "last_accessed_at", "expires_at", "tiered_at")


class ImportResult(BaseModel):
    """What an import did: rows in the file, imported, skipped (id already stored),
    and filtered out (another namespace than the one asked for)."""

    rows: int = 0
    imported: int = 0
    skipped: int = 0
    filtered: int = 0


def file_format(path: Path) -> Format:
    """The format named by `path`'s extension; ValidationError for any other."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".jsonl":
        return "jsonl"
    raise ValidationError(
        f"unknown extension {path.suffix!r} of {path}; use .parquet or .jsonl", field="path"
    )


# -- export ------------------------------------------------------------------------


def export(
    engine: Engine,
    path: str | Path,
    namespace: str | None = None,
    progress: Progress | None = None,
) -> int:
    """Write every memory (of one namespace, or all) to `path`; returns how many."""
    path = Path(path)
    fmt = file_format(path)
    if namespace is not None:
        check_namespace(namespace)
    if not path.parent.is_dir():
        raise ValidationError(f"directory {path.parent} does not exist", field="path")
    total = _count(engine, namespace)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    done = 0
    try:
        if fmt == "parquet":
            sch = schema.schema(engine.dim).with_metadata({"tiermem.dim": str(engine.dim)})
            with pq.ParquetWriter(tmp, sch, compression="zstd") as writer:
                for table in _unique_rows(engine, namespace):
                    writer.write_table(table.select(list(schema.COLUMNS)).cast(sch))
                    done += table.num_rows
                    _report(progress, done, total)
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                for table in _unique_rows(engine, namespace):
                    for row in _json_rows(table):
                        fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
                        fh.write("\n")
                    done += table.num_rows
                    _report(progress, done, total)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ValidationError(f"cannot write {path}: {exc}", field="path") from exc
    finally:
        tmp.unlink(missing_ok=True)
    _report(progress, done, done)
    return done


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, max(done, total))


def _count(engine: Engine, namespace: str | None) -> int:
    """How many rows an export will visit (for progress; duplicates count twice)."""
    b = engine.backends
    if namespace is None:
        return sum(t.stats().count for t in b.tiers.values())
    cold = b.l3.columns(["id"], namespace)
    warm = sum(int(t.num_rows) for t in b.l2.scan(namespace))
    return len(b.l1.ids(namespace)) + warm + (0 if cold is None else int(cold.num_rows))


def _unique_rows(engine: Engine, namespace: str | None) -> Iterator[pa.Table]:
    """Rows of every tier, hot to cold, each id once (from its hottest copy)."""
    seen: set[str] = set()
    for tier in engine.backends.tiers.values():
        for table in tier.scan(namespace):
            ids = table.column("id").to_pylist()
            keep = [i for i, id_ in enumerate(ids) if id_ not in seen]
            seen.update(ids)
            if len(keep) < len(ids):
                table = table.take(pa.array(keep, pa.int64()))
            if table.num_rows:
                yield table


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _json_rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    mat = schema.vectors(table)
    names = [n for n in schema.COLUMNS if n != "embedding"]
    for i, row in enumerate(table.select(names).to_pylist()):
        for col in _TS:
            row[col] = _iso(row[col])
        row["metadata"] = json.loads(row["metadata"])
        row["embedding"] = mat[i].tolist()
        yield {n: row[n] for n in schema.COLUMNS}


# -- import ------------------------------------------------------------------------


def import_file(
    engine: Engine,
    path: str | Path,
    namespace: str | None = None,
    *,
    tier: str = "l1",
    progress: Progress | None = None,
) -> ImportResult:
    """Import `path` (all rows, or those of `namespace`) into `tier`; see the module doc."""
    path = Path(path)
    fmt = file_format(path)
    dst: TierName = inputs.tier(tier)
    if namespace is not None:
        check_namespace(namespace)
    if not path.is_file():
        raise ValidationError(f"no such file: {path}", field="path")
    b = engine._writable()
    now = engine.clock()
    result = ImportResult()
    # Pass 1: validate every row; nothing is written unless all are good.
    first: dict[str, int] = {}
    for n, raw in _raw_rows(path, fmt):
        row = validate_row(n, raw, engine.dim, now)
        if (seen := first.setdefault(row["id"], n)) != n:
            raise RowError(n, "id", f"repeats the id of row {seen}")
        result.rows += 1
        result.filtered += namespace is not None and row["namespace"] != namespace
    first.clear()
    # Pass 2: the file is known good; write it in batches, skipping stored ids.
    total = result.rows - result.filtered
    done = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal done
        ids = [r["id"] for r in batch]
        stored = _stored(engine, ids)
        keep = [r for r in batch if r["id"] not in stored]
        if keep:
            b.tiers[dst].put(_table(keep, engine.dim))
        result.imported += len(keep)
        result.skipped += len(batch) - len(keep)
        done += len(batch)
        batch.clear()
        _report(progress, done, total)

    for n, raw in _raw_rows(path, fmt):
        row = validate_row(n, raw, engine.dim, now)
        if namespace is None or row["namespace"] == namespace:
            batch.append(row)
            if len(batch) >= BATCH:
                flush()
    if batch:
        flush()
    _report(progress, done, total)
    return result


def _stored(engine: Engine, ids: list[str]) -> set[str]:
    """Which of `ids` any tier holds."""
    b = engine.backends
    found = set(b.l1.locate(ids)) | set(b.l2.locate(ids))
    remaining = [i for i in ids if i not in found]
    if remaining:
        found.update(b.l3.get(remaining).column("id").to_pylist())
    return found


def _raw_rows(path: Path, fmt: Format) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, raw dict) of each row of the file."""
    if fmt == "jsonl":
        yield from _jsonl_rows(path)
        return
    try:
        pf = pq.ParquetFile(path)
        n = 0
        for batch in pf.iter_batches(batch_size=BATCH):
            for row in batch.to_pylist():
                n += 1
                yield n, row
    except (OSError, pa.ArrowException) as exc:
        raise ValidationError(
            f"{path} is not a readable Parquet file: {exc}", field="path"
        ) from exc


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RowError(n, "line", f"not valid JSON ({exc.msg})") from None
                if not isinstance(raw, dict):
                    raise RowError(n, "line", f"must be a JSON object, not {type(raw).__name__}")
                yield n, raw
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path} is not UTF-8 text: {exc}", field="path") from None
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc}", field="path") from exc


def _table(rows: list[dict[str, Any]], dim: int) -> pa.Table:
    cols: dict[str, Any] = {c: [r[c] for r in rows] for c in schema.COLUMNS if c != "embedding"}
    cols["embedding"] = np.stack([r["embedding"] for r in rows])
    return schema.from_columns(dim, cols)
