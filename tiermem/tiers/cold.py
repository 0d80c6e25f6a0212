"""L3 cold tier: zstd Parquet files + a manifest, queried with DuckDB.

Layout under ``root``::

    manifest.json                     the commit point (see manifest.py)
    access.parquet                    access stats of L3 rows (checkpointed)
    data/<quoted ns>/part-<uuid>.parquet   rows of schema(dim), sorted by id
    data/<quoted ns>/del-<uuid>.parquet    (id, file): kills `id` in data file `file`

Vectors are stored at `vector_precision` (float32 or float16; see
cold_files.py); a file keeps the precision it was written with, every read
returns float32, and compaction rewrites files to the current setting.

Data files are immutable. A put writes new data files plus delete entries
for the old locations of its ids; a delete writes delete entries only; both
become visible in ONE manifest commit. A delete entry kills an id in one
file only, so an id deleted here and later put again is alive in its new
file. Deletes are applied at read time (anti-join on (id, filename));
`compact_namespace` rewrites a namespace to apply them physically.

Access stats (`last_accessed_at`, `access_count`) change on every read, so
they are not rewritten into Parquet: `touch` keeps them in memory and
`checkpoint`/`close` persist them to ``access.parquet``. A crash loses the
accesses recorded since the last checkpoint (the rows themselves are safe).

One DuckDB connection serves the tier; it is not safe for concurrent use, so
every use holds `connection_lock` (also held by writers, which serialises
them; there is one writer per data dir anyway).
"""

from __future__ import annotations

import bisect
import shutil
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tiermem.errors import QueryError, TierMemError, ValidationError
from tiermem.failpoints import failpoint
from tiermem.filters import Filter
from tiermem.ids import to_us
from tiermem.model import TierName, TierStats
from tiermem.schema import COLUMNS, as_utc, schema
from tiermem.tiers import manifest as mf
from tiermem.tiers.base import SCORE
from tiermem.tiers.cold_files import PAIRS, FileWriter
from tiermem.tiers.cold_files import io_errors as _io
from tiermem.tiers.manifest import VectorPrecision

BATCH = 10_000
COMPACT_FILE_ROWS = 1_000_000  # rows per file written by compact_namespace
_DEAD = "_tm_l3_dead"  # DuckDB name of the registered Arrow table of deleted pairs
_IDS = "_tm_l3_ids"  # ... and of the ids a get/locate looks for


class ColdTier:
    """The cold tier (see the module docstring). Implements `base.Tier`."""

    name: TierName = "l3"

    def __init__(
        self,
        root: Path,
        dim: int,
        *,
        zstd_level: int = 3,
        row_group_size: int = 100_000,
        vector_precision: VectorPrecision = "float32",
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
        )
        self.connection_lock = threading.RLock()
        self._dead: dict[str, set[str]] = {}  # absolute data file -> killed ids
        self._access = mf.AccessStats(self.root)
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
            self._con.register(_DEAD, self.deleted())

    def _writable(self) -> None:
        if self.read_only:
            raise TierMemError(f"L3 at {self.root} is open read-only")
        if self._closed:
            raise TierMemError("L3 tier is closed")

    # ------------------------------------------------------ SQL-layer access

    def files(self, namespace: str | None = None) -> list[Path]:
        """Absolute paths of the live data files (of one namespace, or all)."""
        return [
            self.root / f.path
            for f in self._manifest.data
            if namespace is None or f.namespace == namespace
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
        """A tier-internal query; `ids` are registered as table `_IDS` meanwhile."""
        with self.connection_lock, _io("query", self.root):
            if ids:
                self._con.register(_IDS, pa.table({"id": pa.array(ids, pa.string())}))
            try:
                rel = self._con.sql(sql, params=params)
                assert rel is not None
                return rel.to_arrow_table()
            finally:
                if ids:
                    self._con.unregister(_IDS)

    def _select(self) -> str:
        cols = (
            f"embedding::FLOAT[{self.dim}] AS embedding" if c == "embedding" else c for c in COLUMNS
        )
        return ", ".join(cols)

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
            f"SELECT {', '.join(names)} FROM read_parquet(?, filename=true) AS t "
            f"WHERE {_not_dead()}"
        )
        return self._run(sql, [files])

    def _fetch(self, ids: Sequence[str], columns: str) -> pa.Table:
        """Live rows of `ids` (pruned by manifest id ranges), with a `filename` column."""
        files = [self._abs(f.path) for f in self._candidates(ids)]
        if not files:
            return pa.table({})
        sql = (
            f"SELECT {columns}, filename FROM read_parquet(?, filename=true) AS t "
            f"WHERE id IN (SELECT id FROM {_IDS}) AND {_not_dead()}"
        )
        return self._run(sql, [files], ids)

    def get(self, ids: Sequence[str]) -> pa.Table:
        """The live rows of `ids` held here, with current access stats."""
        with self.connection_lock:
            rows = self._fetch(list(dict.fromkeys(ids)), self._select())
            return self._finish(rows)

    def _finish(self, rows: pa.Table) -> pa.Table:
        """Override access stats, drop helper columns, conform to schema(dim)."""
        if rows.num_rows == 0:
            return self._schema.empty_table()
        rows = self._access.apply(rows)
        return rows.select(list(COLUMNS)).cast(self._schema)

    def search(self, namespace: str, vector: np.ndarray, k: int, flt: Filter) -> pa.Table:
        """Exact cosine top-k of one namespace in DuckDB, with a float64 `_score`.

        `flt.where` (metadata JSON) is checked in Python on a widening LIMIT:
        k*8 rows, then x8, until k pass or every row was seen.
        """
        q = np.asarray(vector, dtype=np.float64).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValidationError(
                f"must have {self.dim} dimensions, got {q.shape[0]}", field="vector"
            )
        out_schema = self._schema.append(pa.field(SCORE, pa.float64()))
        files = [str(p) for p in self.files(namespace)]
        if k <= 0 or not files:
            return out_schema.empty_table()
        where, wparams = flt.sql()
        sql = (
            f"SELECT {self._select()}, filename, "
            f"array_cosine_similarity(embedding::FLOAT[{self.dim}], ?::FLOAT[{self.dim}])::DOUBLE "
            f"AS {SCORE} FROM read_parquet(?, filename=true) AS t "
            f"WHERE namespace = ? AND {where} AND {_not_dead()} "
            f"ORDER BY {SCORE} DESC, id LIMIT ?"
        )
        limit = k * 8 if flt.where else k
        with self.connection_lock:
            while True:
                rows = self._run(sql, [q.tolist(), files, namespace, *wparams, limit])
                passed = rows.filter(flt.mask(rows)) if flt.where and rows.num_rows else rows
                if passed.num_rows >= k or rows.num_rows < limit:
                    break
                limit *= 8
            if passed.num_rows == 0:
                return out_schema.empty_table()
            top = self._access.apply(passed.slice(0, k))
            return top.select([*COLUMNS, SCORE]).cast(out_schema)

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

    # ---------------------------------------------------------------- writes

    def put(self, table: pa.Table) -> None:
        """Upsert rows: new data files + delete entries for old locations, one commit."""
        self._writable()
        table = self._conform(table)
        if table.num_rows == 0:
            return
        with self.connection_lock:
            old = self._locate(table["id"].to_pylist())
            parts = []
            for ns in sorted(pc.unique(table["namespace"]).to_pylist()):
                parts.append(self._writer.data(ns, table.filter(pc.equal(table["namespace"], ns))))
            self._commit(parts, self._write_deletes(old), old)

    def _conform(self, table: pa.Table) -> pa.Table:
        """`table` as schema(dim), the last row of each repeated id only."""
        try:
            table = table.select(list(COLUMNS)).cast(self._schema)
        except (KeyError, pa.ArrowException) as exc:
            raise ValidationError(f"rows do not match schema(dim={self.dim}): {exc}") from exc
        ids = table["id"].to_pylist()
        last = {id_: i for i, id_ in enumerate(ids)}
        return table if len(last) == len(ids) else table.take(sorted(last.values()))

    def _locate(self, ids: Sequence[str]) -> dict[str, str]:
        """id -> absolute data file, for the ids live here."""
        rows = self._fetch(ids, "id")
        if rows.num_rows == 0:
            return {}
        return dict(zip(rows["id"].to_pylist(), rows["filename"].to_pylist(), strict=True))

    def _ns_dir(self, namespace: str) -> Path:
        return self._writer.ns_dir(namespace)

    def _write_deletes(self, killed: dict[str, str]) -> list[mf.DeleteFile]:
        """One delete file per namespace for these (id -> absolute data file) pairs."""
        ns_of = {self._abs(f.path): f.namespace for f in self._manifest.data}
        by_ns: dict[str, list[tuple[str, str]]] = {}
        for id_, file in killed.items():
            by_ns.setdefault(ns_of[file], []).append((id_, self._writer.rel(file)))
        return self._writer.deletes(by_ns)

    def _commit(
        self, data: list[mf.DataFile], deletes: list[mf.DeleteFile], killed: dict[str, str]
    ) -> None:
        """Make new files visible in one manifest commit, then update memory.

        Crash ordering: every file named here is already durable; if we die
        before `mf.commit` renames the manifest they are orphans (removed on
        open), after it they are live. In-memory state follows the commit.
        """
        m = self._manifest
        update = {"data": [*m.data, *data], "deletes": [*m.deletes, *deletes]}
        self._manifest = mf.commit(self.root, m.model_copy(update=update))
        for id_, file in killed.items():
            self._dead.setdefault(file, set()).add(id_)
        self._access.drop(killed)
        self._register_dead()

    def delete(self, ids: Sequence[str]) -> int:
        """Kill the live rows of `ids` (one delete file per namespace); returns how many."""
        self._writable()
        with self.connection_lock:
            killed = self._locate(list(dict.fromkeys(ids)))
            if killed:
                self._commit([], self._write_deletes(killed), killed)
            return len(killed)

    def forget(self, namespace: str) -> int:
        """Drop every file of a namespace in one commit, then remove them from disk."""
        self._writable()
        with self.connection_lock:
            m = self._manifest
            gone = [f for f in m.data if f.namespace == namespace]
            if not gone and not any(d.namespace == namespace for d in m.deletes):
                return 0
            count = sum(self._live_rows(f) for f in gone)
            update = {
                "data": [f for f in m.data if f.namespace != namespace],
                "deletes": [d for d in m.deletes if d.namespace != namespace],
            }
            self._manifest = mf.commit(self.root, m.model_copy(update=update))
            # Committed: the files are invisible now. A crash during removal
            # leaves orphans, which the next writable open deletes.
            files = {self._abs(f.path) for f in gone}
            for file in files:
                self._dead.pop(file, None)
            self._access.drop(files=files)
            self._register_dead()
            with _io("forget", self._ns_dir(namespace)):
                if self._ns_dir(namespace).exists():
                    shutil.rmtree(self._ns_dir(namespace))
                mf.fsync_dir(self.root / "data")
            return count

    def compact_namespace(self, namespace: str) -> int:
        """Rewrite a namespace's live rows into few large files, applying deletes; returns rows.

        Live rows (deletes applied, access stats folded in) are sorted by id
        and cut into files of at most `COMPACT_FILE_ROWS` rows, each with the
        tier's row group size and vector precision. A namespace already in
        one file at that precision, with no delete files, is left alone.

        Crash ordering: the new files are durable before the manifest commit
        (failpoint ``compact.written``), which swaps old for new in one
        rename; the old files are removed after it (``compact.committed``).
        A crash before the commit leaves the new files as orphans, after it
        the old ones; the next writable open deletes orphans either way, so
        the old set or the new set is visible, never both or neither.
        """
        self._writable()
        with self.connection_lock:
            m = self._manifest
            old_data = [f for f in m.data if f.namespace == namespace]
            old_dels = [d for d in m.deletes if d.namespace == namespace]
            if not old_data and not old_dels:
                return 0
            if len(old_data) == 1 and not old_dels and self._is_current(old_data[0]):
                return old_data[0].rows  # already compact: nothing to apply or merge
            old = {f.path for f in old_data} | {d.path for d in old_dels}
            rows = pa.concat_tables([self._schema.empty_table(), *self.scan(namespace)])
            rows = rows.sort_by("id")
            data = [
                self._writer.data(namespace, rows.slice(start, COMPACT_FILE_ROWS))
                for start in range(0, rows.num_rows, COMPACT_FILE_ROWS)
            ]
            failpoint("compact.written")
            update = {
                "data": [f for f in m.data if f.path not in old] + data,
                "deletes": [d for d in m.deletes if d.path not in old],
            }
            self._manifest = mf.commit(self.root, m.model_copy(update=update))
            failpoint("compact.committed")
            # The new files carry the access stats scan() folded in, so the
            # entries of the old files are dropped, and access.parquet is
            # rewritten at once: it must not keep ids that were deleted here.
            moved = {self._abs(p) for p in old}
            self._access.drop(files=moved)
            for path in moved:
                self._dead.pop(path, None)
            self._register_dead()
            with _io("compaction cleanup", self._ns_dir(namespace)):
                for path in moved:
                    Path(path).unlink(missing_ok=True)
                if self._ns_dir(namespace).exists():
                    mf.fsync_dir(self._ns_dir(namespace))
            self.checkpoint()
            return int(rows.num_rows)

    def _is_current(self, f: mf.DataFile) -> bool:
        """Whether `f` stores vectors at the precision new files get."""
        return f.vector_precision == self._writer.precision

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


def _not_dead() -> str:
    """SQL condition on alias `t` (with `filename`): the row is not deleted."""
    return f"NOT EXISTS (SELECT 1 FROM {_DEAD} d WHERE d.id = t.id AND d.file = t.filename)"
