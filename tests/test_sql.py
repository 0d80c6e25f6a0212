"""SQL over memory: the views against the engine's own scan, the events view,
namespace restriction, the documented queries, and the sandbox (escape
attempts refused with nothing written; the time limit)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tiermem
from tests.conftest import DIM, Cli, OpenStore
from tests.test_engine import FakeClock
from tiermem.sql import SqlViews

DOCS = Path(__file__).resolve().parent.parent / "ARCHITECTURE.md"  # its SQL appendix
TS = "TIMESTAMP WITH TIME ZONE"
MEMORY_TYPES = {
    "id": "VARCHAR",
    "namespace": "VARCHAR",
    "kind": "VARCHAR",
    "text": "VARCHAR",
    "importance": "DOUBLE",
    "created_at": TS,
    "updated_at": TS,
    "last_accessed_at": TS,
    "access_count": "BIGINT",
    "expires_at": TS,
    "pinned": "BOOLEAN",
    "version": "BIGINT",
    "source_ids": "VARCHAR[]",
    "superseded_by": "VARCHAR",
    "name": "VARCHAR",
    "tiered_at": TS,
    "embedding": f"FLOAT[{DIM}]",
    "metadata": "JSON",
    "tier": "VARCHAR",
}
EVENT_TYPES = {"at": TS} | {
    c: "VARCHAR" for c in ("run", "job", "action", "id", "namespace", "src", "dst", "reason")
}
POLICY = """
version: 1
kinds:
  episodic:
    l1: {idle: 1h}
    l2: {idle: 1d}
"""


def populated(mem: tiermem.Engine) -> dict[str, list[str]]:
    """Memories of namespaces a and b in every tier; ids per namespace."""
    ids: dict[str, list[str]] = {}
    for ns in ("a", "b"):
        ms = [
            mem.add(
                f"{ns} memory {i}",
                namespace=ns,
                kind="semantic" if i % 2 else "episodic",
                metadata={"source": f"s{i % 3}", "n": i},
            )
            for i in range(6)
        ]
        mem.demote(ms[0].id, to="l2")
        mem.demote(ms[1].id, to="l2")
        mem.demote(ms[2].id, to="l3")
        mem.demote(ms[3].id, to="l3")
        ids[ns] = [m.id for m in ms]
    return ids


@pytest.fixture
def mem(store: tiermem.Engine) -> tiermem.Engine:
    populated(store)
    return store


# -- views ------------------------------------------------------------------------------


def types(mem: tiermem.Engine, view: str) -> dict[str, str]:
    rows = mem.sql(f"DESCRIBE {view}").to_pylist()
    return {r["column_name"]: r["column_type"] for r in rows}


@pytest.mark.parametrize(
    ("view", "tiers"),
    [("hot", ["l1"]), ("warm", ["l2"]), ("cold", ["l3"]), ("memories", ["l1", "l2", "l3"])],
)
def test_view_rows_and_types_match_scan(mem: tiermem.Engine, view: str, tiers: list[str]) -> None:
    assert types(mem, view) == MEMORY_TYPES
    want = {m.id: m for m in mem.scan(tiers=tiers)}
    assert want
    rows = mem.sql(f"SELECT *, metadata::VARCHAR AS meta FROM {view}").to_pylist()
    assert len(rows) == len(want)
    got = {r["id"]: r for r in rows}
    assert got.keys() == want.keys()
    for id, m in want.items():
        r = got[id]
        assert r["tier"] == m.tier
        for field in ("namespace", "kind", "text", "importance", "pinned", "version", "name"):
            assert r[field] == getattr(m, field), field
        for field in ("created_at", "updated_at", "tiered_at", "expires_at"):
            assert r[field] == getattr(m, field), field
        assert r["source_ids"] == list(m.source_ids)
        assert r["superseded_by"] == (None if m.superseded_by is None else str(m.superseded_by))
        assert json.loads(r["meta"]) == m.metadata
        assert r["embedding"] == pytest.approx(list(m.embedding), abs=1e-6)


def test_events_view_types_and_rows_after_demote_delete_forget(
    open_store: OpenStore, tmp_path: Path
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    clock = FakeClock()
    mem = open_store(policy=str(policy), clock=clock)
    assert types(mem, "events") == EVENT_TYPES
    assert mem.sql("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 0}]
    a = [mem.add(f"a {i}", namespace="a").id for i in range(3)]
    b = mem.add("b 0", namespace="b").id
    clock.advance(hours=2)
    report = mem.run("demote")
    assert report.moved == 4
    clock.advance(minutes=1)
    assert mem.delete(a[0])
    clock.advance(minutes=1)
    assert mem.forget(namespace="b") == 1
    rows = mem.sql(
        'SELECT "at", run, job, action, id, namespace, src, dst, reason '
        'FROM events ORDER BY "at", id'
    ).to_pylist()
    moves = [r for r in rows if r["job"] == "demote"]
    assert {r["id"] for r in moves} == {*a, b}
    assert all(
        (r["run"], r["action"], r["src"], r["dst"]) == (report.run, "move", "l1", "l2")
        and "idle" in r["reason"]
        for r in moves
    )
    delete, forget = rows[-2:]
    assert delete | {"run": None} == {
        "at": clock.now - timedelta(minutes=1),
        "run": None,
        "job": "user",
        "action": "delete",
        "id": a[0],
        "namespace": "a",
        "src": "l2",
        "dst": None,
        "reason": "deleted by the user",
    }
    assert forget | {"run": None} == {
        "at": clock.now,
        "run": None,
        "job": "forget",
        "action": "forget",
        "id": "*",
        "namespace": "b",
        "src": "all",
        "dst": None,
        "reason": "forget(namespace='b'): 1 memories",
    }
    # "what was forgotten when and why", one tenant
    assert mem.sql(
        "SELECT action, reason FROM events WHERE action IN ('forget', 'delete')", namespace="b"
    ).to_pylist() == [{"action": "forget", "reason": "forget(namespace='b'): 1 memories"}]


def test_events_view_shows_a_users_promote_and_demote(mem: tiermem.Engine) -> None:
    """The history holds every move: the user's own, not only the jobs'."""
    m = mem.add("moved by hand", namespace="a")
    before = {e["id"] for e in mem.events.read()}  # the fixture's own moves
    assert before
    mem.demote(m.id, to="l3")
    mem.promote(m.id, to="l2")
    mem.promote(m.id, to="l2")  # already there: nothing moves, nothing logged
    rows = mem.sql(
        'SELECT job, action, id, namespace, src, dst, reason FROM events ORDER BY "at"'
    ).to_pylist()
    rows = [r for r in rows if r["id"] not in before]
    base = {"job": "user", "action": "move", "id": m.id, "namespace": "a"}
    assert rows == [
        base | {"src": "l1", "dst": "l3", "reason": "demoted by the user"},
        base | {"src": "l3", "dst": "l2", "reason": "promoted by the user"},
    ]


def test_events_view_skips_a_torn_last_line(mem: tiermem.Engine) -> None:
    ids = [m.id for m in mem.scan(namespace="a", tiers=["l1"])]
    mem.delete(ids[0])
    with open(mem.events.path, "a", encoding="utf-8") as fh:
        fh.write('{"at":"2025-01-01T00:00:00+00:00","run":"x","jo')
    deletes = "SELECT id FROM events WHERE action = 'delete'"  # the fixture's moves aside
    assert mem.sql(deletes).to_pylist() == [{"id": ids[0]}]
    # The next append starts a fresh line: the torn one is skipped, the new one read.
    mem.delete(ids[1])
    assert mem.sql(deletes).to_pylist() == [{"id": ids[0]}, {"id": ids[1]}]


@pytest.mark.parametrize("view", ["hot", "warm", "cold", "memories", "events"])
def test_namespace_restricts_every_view(mem: tiermem.Engine, view: str) -> None:
    mem.delete(next(m.id for m in mem.scan(namespace="a", tiers=["l1"])))
    mem.delete(next(m.id for m in mem.scan(namespace="b", tiers=["l1"])))
    everything = mem.sql(f"SELECT DISTINCT namespace FROM {view} ORDER BY 1").to_pylist()
    assert everything == [{"namespace": "a"}, {"namespace": "b"}]
    for ns in ("a", "b", "zzz"):
        got = mem.sql(f"SELECT DISTINCT namespace FROM {view}", namespace=ns).to_pylist()
        assert got == ([] if ns == "zzz" else [{"namespace": ns}])


def test_namespace_sandbox_cannot_read_other_tenants_files(mem: tiermem.Engine) -> None:
    b_files = [str(p) for p in mem.backends.l3.files("b")]
    a_files = [str(p) for p in mem.backends.l3.files("a")]
    assert b_files and a_files
    q = f"SELECT count(*) AS n FROM read_parquet('{b_files[0]}')"
    assert mem.sql(q).to_pylist()[0]["n"] >= 1  # all of L3 is readable without namespace=
    with pytest.raises(tiermem.QueryError, match="disabled by configuration"):
        mem.sql(q, namespace="a")
    q = f"SELECT count(*) AS n FROM read_parquet('{a_files[0]}')"
    assert mem.sql(q, namespace="a").to_pylist()[0]["n"] >= 1


def test_only_live_l3_files_are_readable(mem: tiermem.Engine) -> None:
    l3 = mem.backends.l3
    old = [str(p) for p in l3.files("a")]
    with pytest.raises(tiermem.QueryError, match="disabled by configuration"):
        mem.sql(f"SELECT * FROM read_text('{l3.root / 'manifest.json'}')")
    for ns in ("a", "b"):
        l3.compact_namespace(ns)
    assert set(old).isdisjoint(str(p) for p in l3.files("a"))
    Path(old[0]).write_bytes(Path(l3.files("a")[0]).read_bytes())  # a stale file left behind
    for namespace in (None, "a"):
        with pytest.raises(tiermem.QueryError, match="disabled by configuration"):
            mem.sql(f"SELECT count(*) FROM read_parquet('{old[0]}')", namespace=namespace)
        q = f"SELECT count(*) AS n FROM read_parquet('{l3.files('a')[0]}')"
        n = mem.sql(q, namespace=namespace)
        assert n.to_pylist()[0]["n"] == 2
    mem.demote(mem.add("later", namespace="a").id, to="l3")  # a new file: a new sandbox
    assert mem.sql("SELECT count(*) AS n FROM cold", namespace="a").to_pylist()[0]["n"] == 3


def test_only_referenced_views_are_read(mem: tiermem.Engine, monkeypatch: Any) -> None:
    calls: list[str] = []
    b = mem.backends
    for name, tier in (("l1", b.l1), ("l2", b.l2)):
        original = tier.scan

        def scan(namespace: str | None = None, _o: Any = original, _n: str = name) -> Any:
            calls.append(_n)
            return _o(namespace)

        monkeypatch.setattr(tier, "scan", scan)
    assert mem.sql("SELECT count(*) AS n FROM cold").to_pylist() == [{"n": 4}]
    assert mem.sql("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 8}]  # 8 moved in
    assert calls == []
    assert mem.sql("SELECT count(*) AS n FROM warm").to_pylist() == [{"n": 4}]
    assert calls == ["l2"]
    calls.clear()
    n = mem.sql("WITH x AS (SELECT * FROM memories) SELECT count(*) AS n FROM x")
    assert n.to_pylist() == [{"n": 12}]
    assert sorted(calls) == ["l1", "l2"]


def test_explain(mem: tiermem.Engine) -> None:
    plan = mem.sql("SELECT count(*) FROM cold WHERE namespace = 'a'", explain=True)
    assert "explain_value" in plan.column_names
    assert "READ_PARQUET" in str(plan.to_pylist()).upper()
    with pytest.raises(tiermem.QueryError, match="EXPLAIN"):
        mem.sql("EXPLAIN ANALYZE SELECT 1")
    with pytest.raises(tiermem.QueryError):
        mem.sql("COPY (SELECT 1) TO 'x.csv'", explain=True)


def doc_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOCS.read_text(), flags=re.S)


def test_documented_queries(mem: tiermem.Engine) -> None:
    queries = doc_queries()
    assert len(queries) >= 6
    cold = next(m for m in mem.scan(tiers=["l3"]))
    vector = "[" + ", ".join(repr(float(x)) for x in cold.embedding) + "]"
    mem.delete(next(m.id for m in mem.scan(namespace="a", tiers=["l1"])))
    mem.forget(namespace="b")
    results = {}
    for q in queries:
        results[q] = mem.sql(q.replace("{vector}", vector).replace("{dim}", str(DIM)))
        assert results[q].num_rows, q
    per_tenant, forgotten, today, search, like, growth, meta = (
        results[q].to_pylist() for q in queries[:7]
    )
    assert sum(r["n"] for r in per_tenant) == 5 and {r["namespace"] for r in per_tenant} == {"a"}
    assert [r["action"] for r in forgotten] == ["forget", "delete"]
    assert forgotten[0]["reason"] == "forget(namespace='b'): 6 memories"
    assert search[0]["id"] == cold.id and search[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert len(like) == 2
    assert growth[-1]["total"] == 5
    assert sum(r["n"] for r in meta) == 5
    assert today


# -- the sandbox -------------------------------------------------------------------------


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    files: dict[str, tuple[int, int]] = {}
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() or p.is_symlink():
                st = p.lstat()
                files[str(p)] = (st.st_size, st.st_mtime_ns)
            else:
                files[str(p)] = (0, 0)
    return files


STATE = """SELECT
  (SELECT count(*) FROM duckdb_tables()) AS tables,
  (SELECT list(view_name ORDER BY view_name) FROM duckdb_views() WHERE NOT internal) AS views,
  (SELECT list(id ORDER BY id) FROM memories) AS ids,
  current_setting('threads') AS threads,
  current_setting('memory_limit') AS memory_limit,
  current_setting('enable_external_access') AS external,
  current_setting('lock_configuration') AS locked,
  current_setting('allowed_paths') AS allowed,
  current_setting('autoload_known_extensions') AS autoload"""

ESCAPES = [
    # file readers and table functions that touch the file system
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM read_json('/etc/passwd')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM parquet_metadata('/etc/passwd')",
    "SELECT * FROM read_duckdb('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM glob('*')",
    "SELECT * FROM read_text('{data}/format.json')",
    "SELECT * FROM read_json('{data}/format.json')",
    "SELECT * FROM '{data}/format.json'",
    "SELECT * FROM read_text('{data}/redis/redis.conf')",
    "SELECT * FROM read_csv('{data}/redis/redis.conf')",
    "SELECT * FROM read_blob('{data}/redis/appendonly.aof')",
    "SELECT * FROM read_text('{data}/events/events.jsonl')",
    "SELECT * FROM read_text('{l3}/../format.json')",
    "SELECT * FROM glob('{data}/*')",
    "SELECT * FROM glob('{data}/l2/**')",
    "SELECT * FROM read_parquet('{data}/hits.arrow')",
    # statements that write, load, change settings or run several things
    "COPY (SELECT 1) TO '{l3}/x.csv'",
    "COPY (SELECT * FROM memories) TO 'x.parquet'",
    "COPY memories FROM '/etc/passwd'",
    "EXPORT DATABASE '{l3}/export'",
    "IMPORT DATABASE '{l3}'",
    "ATTACH '{l3}/x.db' AS x",
    "ATTACH ':memory:' AS x",
    "DETACH memory",
    "USE temp",
    "INSTALL httpfs",
    "LOAD httpfs",
    "LOAD '{l3}/x.duckdb_extension'",
    "SET threads = 64",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET memory_limit",
    "SET VARIABLE x = 1",
    "PRAGMA version",
    "PRAGMA enable_profiling",
    "CALL pragma_version()",
    "CHECKPOINT",
    "VACUUM",
    "BEGIN TRANSACTION",
    "PREPARE p AS SELECT 1",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{l3}/y.csv'",
    "SELECT 1; SELECT 2",
    "SELECT 1; COPY (SELECT 1) TO '{l3}/z.csv'",
    "CREATE TABLE t AS SELECT 1",
    "CREATE TEMP VIEW v AS SELECT 1",
    "CREATE OR REPLACE TEMP VIEW memories AS SELECT 1",
    "CREATE MACRO m() AS 1",
    "CREATE SECRET (TYPE s3, KEY_ID 'k', SECRET 's')",
    "CREATE SEQUENCE s",
    "INSERT INTO memories SELECT * FROM memories",
    "UPDATE memories SET text = 'x'",
    "DELETE FROM memories",
    "DROP VIEW memories",
    "ALTER VIEW memories RENAME TO m",
    "MERGE INTO memories USING cold ON true WHEN MATCHED THEN DELETE",
    # settings changes from inside a SELECT
    "SELECT set_config('threads', '64', false)",
    "SELECT * FROM enable_profiling(format := 'json', save_location := '{l3}/prof.json')",
    "SELECT * FROM enable_logging(storage := 'file', storage_path := '{l3}/logs')",
    "SELECT * FROM disable_profiling()",
    "SELECT * FROM query('CREATE TABLE t AS SELECT 1')",
    "SELECT * FROM query('COPY (SELECT 1) TO ''{l3}/q.csv''')",
    "not sql at all",
]


@pytest.fixture
def sandboxed(mem: tiermem.Engine, tmp_path: Path, monkeypatch: Any) -> Iterator[tiermem.Engine]:
    # what an embedded Redis would keep in the data dir (the tests use a shared one)
    redis_dir = mem.path / "redis"
    redis_dir.mkdir(exist_ok=True)
    (redis_dir / "redis.conf").write_text("requirepass secret\n")
    (redis_dir / "appendonly.aof").write_text("*1\r\n$4\r\nPING\r\n")
    mem.delete(next(m.id for m in mem.scan(namespace="a", tiers=["l1"])))  # an events file
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield mem


@pytest.mark.parametrize("query", ESCAPES)
def test_escape_attempts_are_refused_and_write_nothing(
    sandboxed: tiermem.Engine, tmp_path: Path, query: str
) -> None:
    mem = sandboxed
    l3 = mem.backends.l3.root.resolve()
    q = query.replace("{data}", str(mem.path)).replace("{l3}", str(l3))
    files = snapshot(tmp_path)
    state = mem.sql(STATE).to_pylist()
    for namespace in (None, "a"):
        with pytest.raises(tiermem.QueryError) as err:
            mem.sql(q, namespace=namespace)
        assert str(err.value)
    assert snapshot(tmp_path) == files
    assert mem.sql(STATE).to_pylist() == state


def test_settings_are_visible_and_locked(mem: tiermem.Engine) -> None:
    rows = mem.sql(
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
        "'lock_configuration', 'autoinstall_known_extensions', 'autoload_known_extensions', "
        "'threads', 'temp_directory', 'allowed_directories', 'allowed_paths')"
    ).to_pylist()
    got = {r["name"]: r["value"] for r in rows}
    assert got["enable_external_access"] == "false"
    assert got["lock_configuration"] == "true"
    assert got["autoinstall_known_extensions"] == "false"
    assert got["autoload_known_extensions"] == "false"
    assert got["threads"] == "2"
    assert got["temp_directory"] == ""
    assert got["allowed_directories"] == "[]"
    live = mem.backends.l3.files()
    assert live and all(str(p) in got["allowed_paths"] for p in live)
    limit = mem.sql("SELECT current_setting('memory_limit') AS m").to_pylist()[0]["m"]
    assert limit.endswith("GiB") or limit.endswith("GB")


def test_refusals_say_why(store: tiermem.Engine) -> None:
    with pytest.raises(tiermem.QueryError, match="only a read-only SELECT is allowed, got COPY"):
        store.sql("COPY (SELECT 1) TO 'x.csv'")
    with pytest.raises(tiermem.QueryError, match="exactly one statement allowed, got 2"):
        store.sql("SELECT 1; SELECT 2")
    with pytest.raises(tiermem.QueryError, match="cannot parse"):
        store.sql("SELEC 1")
    with pytest.raises(tiermem.QueryError, match="file system operations are disabled"):
        store.sql("SELECT * FROM read_text('/etc/passwd')")


def test_time_limit_interrupts_a_runaway_query(store: tiermem.Engine) -> None:
    views = SqlViews(store.backends, DIM, time_limit=0.5)
    try:
        start = time.monotonic()
        with pytest.raises(tiermem.QueryError, match=r"exceeded the time limit of 0\.5 s"):
            views.query("SELECT count(*) FROM range(100000000) a, range(100000000) b")
        assert time.monotonic() - start < 10
        assert views.query("SELECT count(*) AS n FROM range(10)").to_pylist() == [{"n": 10}]
    finally:
        views.close()


def test_cli_sql_formats_explain_and_refusal(tmp_path: Path, redis_url: str, prefix: str) -> None:
    run = Cli(tmp_path / "store", redis_url, prefix)
    run("add", "hello", "--ns", "a")
    out = run("sql", "SELECT namespace, tier FROM memories", "--format", "json").stdout
    assert json.loads(out) == [{"namespace": "a", "tier": "l1"}]
    out = run("sql", "SELECT namespace, count(*) AS n FROM hot GROUP BY 1", "--format", "csv")
    assert out.stdout.splitlines() == ["namespace,n", "a,1"]
    assert "a" in run("sql", "SELECT namespace FROM memories", "--ns", "a").stdout
    plan = run("sql", "SELECT count(*) FROM cold", "--explain").stdout
    assert "Aggregate" in plan
    refused = run("sql", "COPY (SELECT 1) TO 'x.csv'", code=1)
    assert "only a read-only SELECT" in refused.stderr + refused.stdout
