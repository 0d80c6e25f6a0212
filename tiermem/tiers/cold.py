"""L3 cold tier: zstd Parquet files + a manifest, queried with DuckDB.

Layout under ``root``::

    manifest.json                     the commit point (see manifest.py)
    access.parquet                    access stats of L3 rows (checkpointed)
    data/<quoted ns>/part-<uuid>.parquet   rows of schema(dim), sorted by id
    data/<quoted ns>/del-<uuid>.parquet    (id, file): kills `id` in data file `file`

Vectors are stored at `vector_precision` (float32 or float16), each one
fixed-size binary value (the bytes layout; files written before it hold
Parquet lists): see cold_files.py. A file keeps the precision and layout it
was written with, every read returns float32, and compaction rewrites files
to the current ones.

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

This module is the write path (put, delete, forget, compaction); the state
and the reads are in cold_reads.py, file writing in cold_files.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tiermem.errors import ValidationError
from tiermem.failpoints import failpoint
from tiermem.schema import COLUMNS
from tiermem.tiers import manifest as mf
from tiermem.tiers.cold_files import io_errors as _io
from tiermem.tiers.cold_reads import ColdReads

COMPACT_FILE_ROWS = 1_000_000  # rows per file written by compact_namespace


class ColdTier(ColdReads):
    """The cold tier (see the module docstring). Implements `base.Tier`."""

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
        tier's row group size, vector precision and layout. A namespace already
        in one such file, with no delete files, is left alone.

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
        """Whether `f` stores vectors as new files do (precision and layout)."""
        w = self._writer
        return f.vector_precision == w.precision and f.vector_layout == w.layout
