"""SQL over memory: DuckDB views of every tier, behind a read-only sandbox.

Views (columns: the Memory fields, ``embedding`` as ``FLOAT[dim]``,
``metadata`` as JSON, times as TIMESTAMPTZ, plus ``tier``):

- ``hot``: L1 rows (a snapshot read from Redis for this query),
- ``warm``: L2 rows (its Arrow data, not copied into DuckDB),
- ``cold``: L3 Parquet files named by the manifest, minus deleted rows,
- ``memories``: all three.

The sandbox: the statement is parsed by DuckDB and must be exactly one
SELECT; the connection can read only the L3 directory
(``allowed_directories`` + ``enable_external_access=false``), cannot
install or load extensions, and its configuration is locked.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from tiermem import schema
from tiermem.errors import QueryError

if TYPE_CHECKING:
    from tiermem.backends import Backends

_FIELDS = [c for c in schema.COLUMNS if c not in ("embedding", "metadata")]


def _select(source: str, dim: int, tier: str, namespace: str | None) -> str:
    cols = ", ".join(_FIELDS)
    where = f" WHERE namespace = {_literal(namespace)}" if namespace is not None else ""
    return (
        f"SELECT {cols}, embedding::FLOAT[{dim}] AS embedding, metadata::JSON AS metadata, "
        f"'{tier}' AS tier FROM {source}{where}"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class SqlViews:
    """A sandboxed DuckDB connection whose views are refreshed per query."""

    def __init__(self, backends: Backends, dim: int) -> None:
        self._b = backends
        self._dim = dim
        self._lock = threading.Lock()
        self._con = duckdb.connect(":memory:")
        root = str(backends.l3.root.resolve())
        for stmt in (
            f"SET allowed_directories = [{_literal(root)}]",
            "SET enable_external_access = false",
            "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false",
            "SET threads = 2",
            "SET memory_limit = '2GB'",
            "SET lock_configuration = true",
        ):
            self._con.execute(stmt)

    def _refresh(self, namespace: str | None) -> None:
        con, dim = self._con, self._dim
        empty = schema.schema(dim).empty_table()
        hot = schema.concat(self._b.l1.scan(namespace), dim)
        warm = schema.concat(self._b.l2.scan(namespace), dim)
        con.register("_hot", hot)
        con.register("_warm", warm)
        files = [str(p) for p in self._b.l3.files(namespace)]
        con.register("_cold_deleted", self._b.l3.deleted())
        if files:
            listing = ", ".join(_literal(f) for f in files)
            cold = (
                f"(SELECT * EXCLUDE (filename) FROM read_parquet([{listing}], filename = true) d "
                "WHERE NOT EXISTS (SELECT 1 FROM _cold_deleted x "
                "WHERE x.id = d.id AND x.file = d.filename))"
            )
        else:
            con.register("_cold_empty", empty)
            cold = "_cold_empty"
        con.execute(f"CREATE OR REPLACE TEMP VIEW hot AS {_select('_hot', dim, 'l1', namespace)}")
        con.execute(f"CREATE OR REPLACE TEMP VIEW warm AS {_select('_warm', dim, 'l2', namespace)}")
        con.execute(f"CREATE OR REPLACE TEMP VIEW cold AS {_select(cold, dim, 'l3', namespace)}")
        con.execute(
            "CREATE OR REPLACE TEMP VIEW memories AS "
            "SELECT * FROM hot UNION ALL SELECT * FROM warm UNION ALL SELECT * FROM cold"
        )

    def close(self) -> None:
        self._con.close()

    def query(self, sql: str, namespace: str | None = None) -> pa.Table:
        """Run one read-only SELECT; QueryError if refused or failing."""
        with self._lock:
            try:
                statements = self._con.extract_statements(sql)
            except duckdb.Error as exc:
                raise QueryError(f"cannot parse the query: {exc}") from exc
            if len(statements) != 1:
                raise QueryError(f"exactly one statement allowed, got {len(statements)}")
            if statements[0].type != duckdb.StatementType.SELECT:
                raise QueryError(f"only SELECT is allowed, got {statements[0].type.name}")
            try:
                self._refresh(namespace)
                return self._con.sql(sql).to_arrow_table()
            except duckdb.Error as exc:
                raise QueryError(f"query failed: {exc}") from exc
