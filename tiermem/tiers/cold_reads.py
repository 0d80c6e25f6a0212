"""The state and read side of the L3 cold tier (`ColdTier` adds the writes).

`ColdReads` owns what a cold tier holds in memory: the committed manifest,
the deleted (id, file) pairs, the access stats, and the one DuckDB
connection (not safe for concurrent use, so every use holds
`connection_lock`). Reads: by id (files pruned by manifest id ranges),
exact cosine search (numpy over bytes-layout files, cold_search.py; DuckDB
over list-layout ones), and pyarrow scans; all apply deletes at read time
(anti-join on (id, filename)) and return float32 vectors whatever the files
store. See cold.py for the layout and the write path.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tiermem.errors import QueryError, TierMemError, ValidationError
from tiermem.filters import Filter
from tiermem.ids import to_us
from tiermem.model import TierName, TierStats
from tiermem.schema import COLUMNS, as_utc, schema
from tiermem.tiers import cold_search
from tiermem.tiers import manifest as mf
from tiermem.tiers.base import SCORE
from tiermem.tiers.cold_files import PAIRS, FileWriter, decode_embedding
from tiermem.tiers.cold_files import io_errors as _io
from tiermem.tiers.found import Found, TableFound
from tiermem.tiers.manifest import VectorLayout, VectorPrecision

BATCH = 10_000
DEAD = "_tm_l3_dead"  # DuckDB name of the registered Arrow table of deleted pairs
IDS = "_tm_l3_ids"  # ... and of the ids a get/locate looks for


class ColdReads:
    """State, reads and access stats of the cold tier; `ColdTier` is the tier."""

    name: TierName = "l3"

    def __init__(
        self,
        root: Path,
        dim: int,
        *,
        zstd_level: int = 3,
        row_group_size: int = 100_000,
        vector_precision: VectorPrecision = "float32",
        vector_layout: VectorLayout = "bytes",
        read_only: bool = False,
    ) -> None:
        self.root = Path(root).absolute()
        self.dim = dim
        self.read_only = read_only
        self._schema = schema(dim)
        self._writer = FileWriter(
            self.root,
            dim,
            zstd_level=zstd_level,
            row_group_size=row_group_size,
            precision=vector_precision,
            layout=vector_layout,
        )
        self.connection_lock = threading.RLock()
        self._dead: dict[str, set[str]] = {}  # absolute data file -> killed ids
        self._access = mf.AccessStats(self.root)
        self._norms = cold_search.Norms()
        self._closed = False
        with _io("open", self.root):
            if not read_only:
                (self.root / "data").mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect()
        self._manifest = mf.load(self.root, dim)
        if not read_only:
            mf.remove_orphans(self.root, self._manifest)
        self.refresh()

    # ------------------------------------------------------------------ state

    def refresh(self) -> None:
        """Re-read the manifest, delete files and access stats from disk."""
        with self.connection_lock:
            self._manifest = mf.load(self.root, self.dim)
            self._dead = mf.read_deletes(self.root, self._manifest)
            self._access.load({str(p) for p in self.files()})
            self._register_dead()

    def _abs(self, rel: str) -> str:
        return str(self.root / rel)

    def _register_dead(self) -> None:
        with self.connection_lock:
            self._con.register(DEAD, self.deleted())

    def _writable(self) -> None:
        if self.read_only:
            raise TierMemError(f"L3 at {self.root} is open read-only")
        if self._closed:
            raise TierMemError("L3 tier is closed")

    # ------------------------------------------------------ SQL-layer access

    def files(self, namespace: str | None = None, layout: VectorLayout | None = None) -> list[Path]:
        """Absolute paths of the live data files (of one namespace, of one layout, or all)."""
        return [
            self.root / f.path
            for f in self._manifest.data
            if (namespace is None or f.namespace == namespace)
            and (layout is None or f.vector_layout == layout)
        ]

    def deleted(self) -> pa.Table:
        """Deleted (id, file) pairs, file as an absolute path: anti-join these."""
        ids = [i for ids in self._dead.values() for i in ids]
        files = [f for f, ids in self._dead.items() for _ in ids]
        return pa.table([pa.array(ids, pa.string()), pa.array(files, pa.string())], PAIRS)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run `sql` on the tier's DuckDB connection (under its lock); QueryError on failure."""
        with self.connection_lock:
            try:
                rel = self._con.sql(sql, params=list(params) if params else None)
                return rel.to_arrow_table() if rel is not None else pa.table({})
            except duckdb.Error as exc:
                raise QueryError(str(exc)) from exc

    def _run(self, sql: str, params: list[Any], ids: Sequence[str] = ()) -> pa.Table:
        """A tier-internal query; `ids` are registered as table `IDS` meanwhile."""
        with self.connection_lock, _io("query", self.root):
            if ids:
                self._con.register(IDS, pa.table({"id": pa.array(ids, pa.string())}))
            try:
                rel = self._con.sql(sql, params=params)
                assert rel is not None
                return rel.to_arrow_table()
            finally:
                if ids:
                    self._con.unregister(IDS)

    def _select(self, layout: VectorLayout) -> str:
        """Every column; the embedding as FLOAT[dim] (list layout) or its bytes."""
        vec = f"embedding::FLOAT[{self.dim}] AS embedding" if layout == "list" else "embedding"
        return ", ".join(vec if c == "embedding" else c for c in COLUMNS)

    # ----------------------------------------------------------------- reads

    def candidate_files(self, ids: Sequence[str]) -> list[Path]:
        """Data files whose manifest id range covers at least one of `ids`."""
        return [self.root / f.path for f in self._candidates(ids)]

    def _candidates(self, ids: Sequence[str]) -> list[mf.DataFile]:
        wanted = sorted(ids)
        out = []
        for f in self._manifest.data:
            i = bisect.bisect_left(wanted, f.min_id)  # first wanted id >= min_id
            if i < len(wanted) and wanted[i] <= f.max_id:
                out.append(f)
        return out

    def columns(self, names: Sequence[str], namespace: str | None = None) -> pa.Table | None:
        """Live rows, only the named columns (the lifecycle reads no vectors); None if empty."""
        files = [str(p) for p in self.files(namespace)]
        if not files:
            return None
        sql = (
            f"SELECT {', '.join(names)} FROM read_parquet(?, filename=true) AS t WHERE {not_dead()}"
        )
        return self._run(sql, [files])

    def consolidated(self, namespace: str, kind: str) -> pa.Table:
        """Live rows of `namespace` of `kind` that consolidation made (non-empty
        `source_ids`) and nothing superseded, with current access stats: the
        memories of a namespace gone cold that a consolidate plan may still grow.

        Filtered in DuckDB: a namespace's L3 is mostly the episodes consolidated
        before, and only these few rows are read whole.
        """
        parts, layouts = [], get_args(VectorLayout)
        with self.connection_lock:
            for layout in layouts:
                files = [str(p) for p in self.files(namespace, layout)]
                if not files:
                    continue
                sql = (
                    f"SELECT {self._select(layout)}, filename "
                    f"FROM read_parquet(?, filename=true) AS t WHERE kind = ? "
                    f"AND superseded_by IS NULL AND len(source_ids) > 0 AND {not_dead()}"
                )
                parts.append(decode_embedding(self._run(sql, [files, kind]), self.dim))
            return self._finish(pa.concat_tables(parts)) if parts else self._schema.empty_table()

    def _fetch(self, ids: Sequence[str], columns: str | None = None) -> pa.Table:
        """Live rows of `ids` (pruned by manifest id ranges), with a `filename` column;
        `columns` (SQL) or all, float32 vectors whatever the files' layout."""
        by_layout: dict[VectorLayout, list[str]] = {}
        for f in self._candidates(ids):
            by_layout.setdefault(f.vector_layout, []).append(self._abs(f.path))
        parts = []
        for layout, files in sorted(by_layout.items()):
            sql = (
                f"SELECT {columns or self._select(layout)}, filename "
                f"FROM read_parquet(?, filename=true) AS t "
                f"WHERE id IN (SELECT id FROM {IDS}) AND {not_dead()}"
            )
            parts.append(decode_embedding(self._run(sql, [files], ids), self.dim))
        return pa.concat_tables(parts) if parts else pa.table({})

    def get(self, ids: Sequence[str]) -> pa.Table:
        """The live rows of `ids` held here, with current access stats."""
        with self.connection_lock:
            rows = self._fetch(list(dict.fromkeys(ids)))
            return self._finish(rows)

    def _finish(self, rows: pa.Table) -> pa.Table:
        """Override access stats, drop helper columns, conform to schema(dim)."""
        if rows.num_rows == 0:
            return self._schema.empty_table()
        rows = self._access.apply(decode_embedding(rows, self.dim))
        return rows.select(list(COLUMNS)).cast(self._schema)

    def search(self, namespace: str, vector: np.ndarray, k: int, flt: Filter) -> pa.Table:
        """Exact cosine top-k of one namespace, with a float64 `_score` (ties by id):
        bytes-layout files in numpy (cold_search.py), list-layout ones in DuckDB."""
        q = np.asarray(vector, dtype=np.float64).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValidationError(
                f"must have {self.dim} dimensions, got {q.shape[0]}", field="vector"
            )
        out_schema = self._schema.append(pa.field(SCORE, pa.float64()))
        by_layout: dict[VectorLayout, list[str]] = {}
        for f in self._manifest.data:
            if f.namespace == namespace:
                by_layout.setdefault(f.vector_layout, []).append(self._abs(f.path))
        if k <= 0 or not by_layout:
            return out_schema.empty_table()
        with self.connection_lock:
            parts = []
            if "bytes" in by_layout:
                files = [(p, frozenset(self._dead.get(p, ()))) for p in by_layout["bytes"]]
                with _io("search", self.root):
                    parts.append(cold_search.top_k(files, q, k, flt, self.dim, self._norms))
            if "list" in by_layout:
                parts.append(self._search_sql(by_layout["list"], namespace, q, k, flt))
            full = self._schema.append(pa.field("filename", pa.string())).append(out_schema[-1])
            parts = [p.select(full.names).cast(full) for p in parts if p.num_rows]
            if not parts:
                return out_schema.empty_table()
            rows = pa.concat_tables(parts)
            order = pc.sort_indices(rows, [(SCORE, "descending"), ("id", "ascending")])
            top = self._access.apply(rows.take(order[:k]))
            return top.select([*COLUMNS, SCORE]).cast(out_schema)

    def _search_sql(
        self, files: list[str], namespace: str, q: np.ndarray, k: int, flt: Filter
    ) -> pa.Table:
        """Top-k of list-layout files in DuckDB, with `filename` and `_score`.

        `flt.where` (metadata JSON) is checked in Python on a widening LIMIT:
        k*8 rows, then x8, until k pass or every row was seen.
        """
        where, wparams = flt.sql()
        sql = (
            f"SELECT {self._select('list')}, filename, "
            f"array_cosine_similarity(embedding::FLOAT[{self.dim}], ?::FLOAT[{self.dim}])::DOUBLE "
            f"AS {SCORE} FROM read_parquet(?, filename=true) AS t "
            f"WHERE namespace = ? AND {where} AND {not_dead()} "
            f"ORDER BY {SCORE} DESC, id LIMIT ?"
        )
        limit = k * 8 if flt.where else k
        while True:
            rows = self._run(sql, [q.tolist(), files, namespace, *wparams, limit])
            passed = rows.filter(flt.mask(rows)) if flt.where and rows.num_rows else rows
            if passed.num_rows >= k or rows.num_rows < limit:
                return passed.slice(0, k)
            limit *= 8

    def find(self, namespace: str, vector: np.ndarray, k: int, flt: Filter) -> Found:
        """`search`'s table, for the read path (`tiers.found`)."""
        return TableFound("l3", self.search(namespace, vector, k, flt))

    def scan(self, namespace: str | None = None) -> Iterator[pa.Table]:
        """Every live row (of one namespace, or all), in batches of at most 10k rows.

        Reads the files with pyarrow, not DuckDB, so a slow consumer never
        holds the connection lock; the file list is a snapshot taken at start.
        """
        for path in [str(p) for p in self.files(namespace)]:
            dead = pa.array(sorted(self._dead.get(path, ())), pa.string())
            with _io("scan", path):
                batches = pq.ParquetFile(path).iter_batches(batch_size=BATCH)
                yield from self._scan_batches(path, batches, dead)

    def _scan_batches(
        self, path: str, batches: Iterator[pa.RecordBatch], dead: pa.Array
    ) -> Iterator[pa.Table]:
        for batch in batches:
            rows = pa.Table.from_batches([batch])
            if len(dead):
                rows = rows.filter(pc.invert(pc.is_in(rows["id"], value_set=dead)))
            if rows.num_rows:
                rows = rows.append_column("filename", pa.array([path] * rows.num_rows))
                yield self._finish(rows)

    def _live_rows(self, f: mf.DataFile) -> int:
        return f.rows - len(self._dead.get(self._abs(f.path), ()))

    def namespaces(self) -> set[str]:
        """Namespaces with at least one live row here."""
        return {f.namespace for f in self._manifest.data if self._live_rows(f) > 0}

    def stats(self) -> TierStats:
        """Live rows (rows minus deletes), data file bytes, namespaces."""
        data = self._manifest.data
        return TierStats(
            count=sum(self._live_rows(f) for f in data),
            bytes=sum(f.bytes for f in data),
            namespaces=len(self.namespaces()),
        )

    # ---------------------------------------------------------- access stats

    def touch(self, ids: Sequence[str], at: datetime) -> None:
        """Record one access of each id held here (in memory until `checkpoint`).

        Allowed read-only too (reads record accesses), but never persisted there.
        """
        at_us = to_us(as_utc(at))
        with self.connection_lock:
            rows = self._fetch(list(dict.fromkeys(ids)), "id, last_accessed_at, access_count")
            if rows.num_rows == 0:
                return
            self._access.record(self._access.apply(rows), at_us)

    def checkpoint(self) -> None:
        """Persist access stats to ``access.parquet`` (no-op when read-only)."""
        if self.read_only or self._closed:
            return
        with self.connection_lock:
            self._access.save({str(p) for p in self.files()})

    def close(self) -> None:
        """Checkpoint access stats and close the DuckDB connection (idempotent)."""
        if self._closed:
            return
        self.checkpoint()
        with self.connection_lock:
            self._closed = True
            self._con.close()


def not_dead() -> str:
    """SQL condition on alias `t` (with `filename`): the row is not deleted."""
    return f"NOT EXISTS (SELECT 1 FROM {DEAD} d WHERE d.id = t.id AND d.file = t.filename)"
