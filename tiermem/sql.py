"""SQL over memory: DuckDB views of every tier, behind a read-only sandbox.

Views (memory columns: the Memory fields, ``embedding`` as ``FLOAT[dim]``,
``metadata`` as JSON, times as TIMESTAMPTZ, plus ``tier``):

- ``hot``: L1 rows (a snapshot read from Redis for this query),
- ``warm``: L2 rows (its Arrow data, registered, not copied into DuckDB),
- ``cold``: the L3 Parquet files named by the manifest, minus deleted rows,
- ``memories``: all three,
- ``events``: the events log (moves, merges, deletes, expiries, forgets).

Only the views a query names are refreshed (``SELECT ... FROM cold`` never
reads Redis); the others are pointed at empty tables. The schema and
example queries are in ARCHITECTURE.md ("Appendix: SQL reference").

The sandbox (every refusal is a QueryError saying why):

- the statement is parsed by DuckDB and must be exactly one SELECT;
- one connection per namespace restriction; its only readable files are the
  live L3 data files the manifest names (of that namespace, or of all):
  ``allowed_paths`` then ``enable_external_access=false``, so no other file
  (other tenants' files, files a compaction replaced, the embedded Redis,
  ``format.json``, /etc) is reachable and nothing can be written; the
  connection is rebuilt when that list of files changes; the events log is
  loaded into Arrow by Python;
- spilling to disk is off (``temp_directory=''``), extension install and
  autoload are off, memory and threads are limited, and the configuration
  is locked;
- a timer interrupts a query that runs longer than the time limit.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb
import duckdb.func
import pyarrow as pa
import pyarrow.compute as pc

from tiermem import schema
from tiermem.errors import QueryError
from tiermem.tiers.cold_files import blob_vectors

if TYPE_CHECKING:
    from tiermem.backends import Backends
    from tiermem.events import EventLog

_FIELDS = [c for c in schema.COLUMNS if c not in ("embedding", "metadata")]

EVENT_COLUMNS = ("at", "run", "job", "action", "id", "namespace", "src", "dst", "reason")
EVENTS_SCHEMA = pa.schema(
    [pa.field("at", schema.TS)] + [pa.field(c, pa.string()) for c in EVENT_COLUMNS[1:]]
)

MEMORY_VIEWS = ("hot", "warm", "cold")
VIEWS = (*MEMORY_VIEWS, "memories", "events")
# What each name a query may mention makes us refresh.
_NEEDS: dict[str, tuple[str, ...]] = {
    **{v: (v,) for v in MEMORY_VIEWS},
    **{f"_{v}": (v,) for v in MEMORY_VIEWS},
    "_cold_deleted": ("cold",),
    "memories": MEMORY_VIEWS,
    "events": ("events",),
    "_events": ("events",),
}

DEFAULT_TIME_LIMIT = 30.0
DEFAULT_MEMORY_LIMIT = "2GB"
DEFAULT_THREADS = 2
_MAX_CONNECTIONS = 8


def _select(source: str, dim: int, tier: str, namespace: str | None) -> str:
    cols = ", ".join(_FIELDS)
    where = f" WHERE namespace = {_literal(namespace)}" if namespace is not None else ""
    return (
        f"SELECT {cols}, embedding::FLOAT[{dim}] AS embedding, metadata::JSON AS metadata, "
        f"'{tier}' AS tier FROM {source}{where}"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _EventCache:
    """The events log as Arrow, read incrementally; unparsable lines are skipped."""

    def __init__(self, log: EventLog | None) -> None:
        self._log = log
        self._offset = 0
        self._rows: list[dict[str, Any]] = []
        self._table = EVENTS_SCHEMA.empty_table()

    def table(self) -> pa.Table:
        if self._log is None:
            return self._table
        path = self._log.path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self._offset:  # replaced or truncated: start over
            self._offset, self._rows = 0, []
            self._table = EVENTS_SCHEMA.empty_table()
        if size == self._offset:
            return self._table
        with open(path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read(size - self._offset)
        end = chunk.rfind(b"\n") + 1  # a torn last line waits for its newline
        if end == 0:
            return self._table
        self._offset += end
        fresh = [r for line in chunk[:end].splitlines() if (r := _event(line)) is not None]
        if fresh:
            self._rows.extend(fresh)
            self._table = pa.Table.from_pylist(self._rows, schema=EVENTS_SCHEMA)
        return self._table


def _event(line: bytes) -> dict[str, Any] | None:
    try:
        raw = json.loads(line)
        row: dict[str, Any] = {
            c: None if raw.get(c) is None else str(raw[c]) for c in EVENT_COLUMNS
        }
        row["at"] = datetime.fromisoformat(raw["at"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return row


VECTORS = "tm_vectors"  # SQL function: bytes-layout L3 embeddings as FLOAT[dim]


def _register_vectors(con: duckdb.DuckDBPyConnection, dim: int) -> None:
    """Define `VECTORS` on `con`: DuckDB cannot reinterpret a BLOB as floats, so
    the cold view decodes bytes-layout embeddings (tiers/cold_files.py) in
    Python, zero-copy for float32. Only this connection knows the function:
    another DuckDB reading the files sees the embedding as a BLOB of
    little-endian floats."""

    def decode(blobs: pa.Array | pa.ChunkedArray) -> pa.Array:
        arr = blobs.combine_chunks() if isinstance(blobs, pa.ChunkedArray) else blobs
        return schema.embedding_array(blob_vectors(arr, dim))

    vector = duckdb.array_type(duckdb.sqltypes.FLOAT, dim)
    arrow = duckdb.func.PythonUDFType.ARROW
    con.create_function(VECTORS, decode, [duckdb.sqltypes.BLOB], vector, type=arrow)


class _Sandbox:
    """One locked-down DuckDB connection that can read exactly `files` (absolute paths)."""

    def __init__(self, files: Sequence[str], memory_limit: str, threads: int, dim: int) -> None:
        self.files = tuple(files)
        allowed = ", ".join(_literal(f) for f in self.files)
        self.con = duckdb.connect(":memory:")
        try:
            # Order matters: temp_directory and allowed_paths cannot be
            # changed once external access is off; nothing after the lock.
            # Single files, not the L3 directory: data files that a compaction
            # or forget replaced (removed only after the commit, or left as
            # orphans by a crash) stay unreachable.
            for stmt in (
                "SET temp_directory = ''",
                f"SET allowed_paths = [{allowed}]",
                "SET enable_external_access = false",
                "SET autoinstall_known_extensions = false",
                "SET autoload_known_extensions = false",
                "SET allow_community_extensions = false",
                f"SET threads = {int(threads)}",
                f"SET memory_limit = {_literal(memory_limit)}",
                "SET lock_configuration = true",
            ):
                self.con.execute(stmt)
            _register_vectors(self.con, dim)
        except duckdb.Error:
            self.con.close()
            raise

    def close(self) -> None:
        self.con.close()


class SqlViews:
    """Sandboxed DuckDB connections whose views are refreshed per query."""

    def __init__(
        self,
        backends: Backends,
        dim: int,
        *,
        events: EventLog | None = None,
        time_limit: float = DEFAULT_TIME_LIMIT,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        if time_limit <= 0:
            raise ValueError("time_limit must be positive")
        self._b = backends
        self._dim = dim
        self._events = _EventCache(events)
        self.time_limit = time_limit
        self._memory_limit = memory_limit
        self._threads = threads
        self._lock = threading.Lock()
        self._boxes: OrderedDict[str | None, _Sandbox] = OrderedDict()
        self._empty = schema.schema(dim).empty_table()
        # get_table_names binds the query, and on a connection that has the views
        # it reports their base tables instead: ask an empty sandbox.
        self._parser = _Sandbox((), "64MB", 1, dim)
        # Fail at open, not at the first query, if DuckDB refuses a setting.
        self._box(None, self._files(None))

    # -- connections -------------------------------------------------------------------

    def _files(self, namespace: str | None) -> list[str]:
        """The live L3 data files (of one namespace), as the views and the sandbox name them."""
        return [str(p) for p in self._b.l3.files(namespace)]

    def _box(self, namespace: str | None, files: list[str]) -> _Sandbox:
        """The connection of `namespace`, rebuilt if the live files are not those it may read."""
        box = self._boxes.pop(namespace, None)
        if box is not None and box.files != tuple(files):
            box.close()  # allowed_paths is locked: a new file list needs a new connection
            box = None
        if box is None:
            box = _Sandbox(files, self._memory_limit, self._threads, self._dim)
        self._boxes[namespace] = box
        while len(self._boxes) > _MAX_CONNECTIONS:
            _, old = self._boxes.popitem(last=False)
            old.close()
        return box

    def close(self) -> None:
        with self._lock:
            for box in self._boxes.values():
                box.close()
            self._boxes.clear()
            self._parser.close()

    # -- views -------------------------------------------------------------------------

    def _refresh(
        self,
        con: duckdb.DuckDBPyConnection,
        namespace: str | None,
        need: set[str],
        l3_files: list[str],
    ) -> None:
        """(Re)create every view; only those in `need` get data, the rest are empty."""
        dim, empty = self._dim, self._empty
        for name, tier_name, tier in (("hot", "l1", self._b.l1), ("warm", "l2", self._b.l2)):
            data = schema.concat(tier.scan(namespace), dim) if name in need else empty
            con.register(f"_{name}", data)
            view = _select(f"_{name}", dim, tier_name, namespace)
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {view}")
        files = l3_files if "cold" in need else []
        con.register("_cold", empty)  # the same objects whatever the query needs
        if files:
            dead = self._b.l3.deleted()
            if namespace is not None:
                dead = dead.filter(pc.is_in(dead.column("file"), pa.array(files, pa.string())))
            con.register("_cold_deleted", dead)
            cold = (
                f"(SELECT * EXCLUDE (filename) FROM ({self._cold_files(files)}) d "
                "WHERE NOT EXISTS (SELECT 1 FROM _cold_deleted x "
                "WHERE x.id = d.id AND x.file = d.filename))"
            )
        else:
            con.register("_cold_deleted", self._b.l3.deleted().slice(0, 0))
            cold = "_cold"
        con.execute(f"CREATE OR REPLACE TEMP VIEW cold AS {_select(cold, dim, 'l3', namespace)}")
        con.execute(
            "CREATE OR REPLACE TEMP VIEW memories AS "
            "SELECT * FROM hot UNION ALL SELECT * FROM warm UNION ALL SELECT * FROM cold"
        )
        events = self._events.table() if "events" in need else EVENTS_SCHEMA.empty_table()
        if namespace is not None and events.num_rows:
            events = events.filter(pc.equal(events.column("namespace"), namespace))
        con.register("_events", events)
        con.execute("CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM _events")

    def _cold_files(self, files: list[str]) -> str:
        """The rows of these L3 files, embeddings as FLOAT[dim] whatever their layout."""
        in_bytes = {str(p) for p in self._b.l3.files(layout="bytes")}
        parts = []
        for layout in ("list", "bytes"):
            mine = [f for f in files if (f in in_bytes) == (layout == "bytes")]
            if mine:
                vec = (
                    f"{VECTORS}(embedding)"
                    if layout == "bytes"
                    else f"embedding::FLOAT[{self._dim}]"
                )
                listing = ", ".join(_literal(f) for f in mine)
                parts.append(
                    f"SELECT * REPLACE ({vec} AS embedding) "
                    f"FROM read_parquet([{listing}], filename = true)"
                )
        return " UNION ALL BY NAME ".join(parts)

    # -- queries -----------------------------------------------------------------------

    @staticmethod
    def check(con: duckdb.DuckDBPyConnection, sql: str) -> None:
        """QueryError unless `sql` parses as exactly one SELECT."""
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError(f"cannot parse the query: {exc}") from exc
        if len(statements) != 1:
            raise QueryError(f"exactly one statement allowed, got {len(statements)}")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise QueryError(f"only a read-only SELECT is allowed, got {kind.name}")

    def _needed(self, sql: str) -> set[str]:
        """The views `sql` reads (a superset: unknown means all)."""
        try:
            names: Iterable[str] = self._parser.con.get_table_names(sql)
        except duckdb.Error:
            names = _NEEDS  # cannot tell: refresh everything
        return {v for n in names for v in _NEEDS.get(n.lower(), ())}

    def query(self, sql: str, namespace: str | None = None, *, explain: bool = False) -> pa.Table:
        """Run one read-only SELECT (or its EXPLAIN); QueryError if refused or failing."""
        with self._lock:
            files = self._files(namespace)
            try:
                con = self._box(namespace, files).con
            except duckdb.Error as exc:
                raise QueryError(f"cannot open the SQL sandbox: {exc}") from exc
            self.check(con, sql)
            need = self._needed(sql)
            if explain:
                sql = f"EXPLAIN {sql}"
            try:
                self._refresh(con, namespace, need, files)
            except duckdb.Error as exc:
                raise QueryError(f"cannot prepare the views: {exc}") from exc
            return self._run(con, sql)

    def _run(self, con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
        guard = threading.Lock()
        state = {"running": True, "fired": False}

        def stop() -> None:
            with guard:
                if state["running"]:
                    state["fired"] = True
                    con.interrupt()

        timer = threading.Timer(self.time_limit, stop)
        timer.daemon = True
        timer.start()
        try:
            return con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            with guard:
                fired = state["fired"]
            if fired:
                raise QueryError(f"query exceeded the time limit of {self.time_limit:g} s") from exc
            raise QueryError(f"query failed: {exc}") from exc
        finally:
            with guard:
                state["running"] = False
            timer.cancel()
