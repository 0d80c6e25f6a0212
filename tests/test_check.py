"""`check`: each inconsistency made by hand is reported, `fix` repairs it, and a
second check is clean. Plus the CLI's exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

import tiermem
from tests.conftest import Cli, OpenStore
from tiermem.check import CheckReport


def kinds(report: CheckReport) -> list[str]:
    return sorted(p.kind for p in report.problems)


def fill(mem: tiermem.Engine, n: int = 6, ns: str = "user:a") -> list[str]:
    res = mem.add_many([{"text": f"fact {i}"} for i in range(n)], namespace=ns)
    return [i for i in res.ids if i]


def test_clean_store_is_clean(store: tiermem.Engine) -> None:
    ids = fill(store)
    store.demote(ids[0], to="l2")
    store.demote(ids[1], to="l3")
    report = store.check()
    assert report.ok and report.problems == []
    assert report.checked["l1"] == 4 and report.checked["l2"] == 1 and report.checked["l3"] == 1
    assert report.checked["l2.searched"] == 1


def test_duplicates_across_tiers(store: tiermem.Engine) -> None:
    ids = fill(store)
    b = store.backends
    b.l2.put(b.l1.get(ids[:3]))  # same rows in L1 and L2: L1 wins (hotter)
    newer = b.l1.get([ids[3]])
    newer = newer.set_column(
        newer.schema.get_field_index("version"), "version", pa.array([7], pa.int64())
    )
    b.l3.put(newer)  # a newer version in L3: L3 wins
    report = store.check()
    assert kinds(report) == ["duplicate"] * 4 and not report.ok
    assert {p.id for p in report.problems} == set(ids[:4])
    assert not any(p.fixed for p in report.problems)

    fixed = store.check(fix=True)
    assert kinds(fixed) == ["duplicate"] * 4 and fixed.ok
    assert store.check().problems == []
    tiers = {m.id: (m.tier, m.version) for m in store.scan()}
    assert len(tiers) == 6
    assert all(tiers[i] == ("l1", 1) for i in ids[:3])
    assert tiers[ids[3]] == ("l3", 7)


def test_orphan_and_missing_l3_files(store: tiermem.Engine) -> None:
    ids = fill(store)
    store.demote(ids[0], to="l3")
    root = store.backends.l3.root
    orphan = root / "data" / quote("user:a", safe="") / "part-orphan.parquet"
    pq.write_table(pa.table({"id": ["x"]}), orphan)
    (root / "manifest.json.tmp").write_text("{}")
    report = store.check()
    assert kinds(report) == ["l3.orphan", "l3.orphan"]
    fixed = store.check(fix=True)
    assert fixed.ok and all(p.fixed for p in fixed.problems)
    assert not orphan.exists() and not (root / "manifest.json.tmp").exists()
    assert store.check().problems == []
    assert store.get(ids[0]).tier == "l3"  # the live file was kept

    live = store.backends.l3.files()[0]
    live.unlink()
    report = store.check(fix=True)
    assert kinds(report) == ["l3.missing"] and not report.ok  # unfixable: reported
    assert report.problems[0].path == str(live)


def test_l1_directory_and_records(store: tiermem.Engine) -> None:
    ids = fill(store)
    l1 = store.backends.l1
    l1.client.hset(l1.keys.directory(), "ghost", "user:a")  # points nowhere
    l1.client.hdel(l1.keys.directory(), ids[2])  # a record the directory lost
    report = store.check()
    assert kinds(report) == ["l1.dangling", "l1.unindexed"]
    assert {p.id for p in report.problems} == {"ghost", ids[2]}
    with pytest.raises(tiermem.NotFound):
        store.get(ids[2])

    fixed = store.check(fix=True)
    assert fixed.ok and all(p.fixed for p in fixed.problems)
    assert store.check().problems == []
    assert l1.client.hget(l1.keys.directory(), "ghost") is None
    assert store.get(ids[2]).text == "fact 2"
    hits = store.search("fact 2", namespace="user:a", k=6)
    assert ids[2] in {h.memory.id for h in hits}


def test_unfinished_move_in_the_journal_log(store: tiermem.Engine) -> None:
    ids = fill(store)
    b = store.backends
    store.mover.journal.begin("l1", "l2", ids[:2])  # a move that crashed after its copy
    b.l2.put(b.l1.get(ids[:2]))
    report = store.check()
    assert kinds(report) == ["duplicate", "duplicate", "journal"]
    assert "moves.log" in next(p.path for p in report.problems if p.kind == "journal")
    assert store.check(fix=True).ok
    assert store.mover.journal.pending() == []
    assert store.check().problems == []
    assert len(list(store.scan())) == 6


def test_leftover_journal(store: tiermem.Engine) -> None:
    """A move intent file, as stores wrote them before the journal log."""
    ids = fill(store)
    b = store.backends
    b.l2.put(b.l1.get(ids[:2]))  # a move that crashed after its copy ...
    journal = store.path / "moves" / "deadbeef.json"
    journal.write_text(json.dumps({"src": "l1", "dst": "l2", "ids": ids[:2]}))  # ... and journal
    report = store.check()
    assert kinds(report) == ["duplicate", "duplicate", "journal"]
    fixed = store.check(fix=True)
    assert fixed.ok
    assert not journal.exists()
    assert store.check().problems == []
    assert len(list(store.scan())) == 6


def test_corrupt_journal_is_reported_not_fixed(store: tiermem.Engine) -> None:
    fill(store, 1)
    bad = store.path / "moves" / "bad.json"
    bad.write_text("[1, 2")
    report = store.check(fix=True)
    assert kinds(report) == ["journal.corrupt"] and not report.ok
    assert bad.exists()


def test_unsearchable_l2_row_is_reindexed(
    store: tiermem.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = fill(store)
    for id_ in ids:
        store.demote(id_, to="l2")
    l2 = store.backends.l2
    hidden = {ids[4]}
    real_search, real_put = l2.search, l2.put

    def search(*args: Any, **kw: Any) -> pa.Table:  # an index that lost a row
        out = real_search(*args, **kw)
        keep = [i for i, x in enumerate(out.column("id").to_pylist()) if x not in hidden]
        return out.take(pa.array(keep, pa.int64()))

    def put(table: pa.Table) -> None:
        hidden.difference_update(table.column("id").to_pylist())
        real_put(table)

    monkeypatch.setattr(l2, "search", search)
    monkeypatch.setattr(l2, "put", put)
    report = store.check()
    assert kinds(report) == ["l2.unsearchable"] and report.problems[0].id == ids[4]
    fixed = store.check(fix=True)
    assert fixed.ok and fixed.problems[0].fixed
    assert store.check().problems == []


def test_read_only_store_cannot_fix(store: tiermem.Engine, open_store: OpenStore) -> None:
    fill(store, 1)
    reader = open_store(store.path, read_only=True)
    assert reader.check().ok
    with pytest.raises(tiermem.TierMemError, match="read-only"):
        reader.check(fix=True)


def test_cli_exit_codes(tmp_path: Path, redis_url: str, prefix: str) -> None:
    cli = Cli(tmp_path / "store", redis_url, prefix)

    def run(*args: str, code: int = 0) -> str:
        return cli(*args, code=code).stdout

    run("add", "hello", "--ns", "n")
    assert "0 problems" in run("check")
    client = redis.Redis.from_url(redis_url)
    client.hset(f"{prefix}:dir", "ghost", "n")
    out = run("check", code=1)
    assert "l1.dangling" in out and "ghost" in out and "1 unfixed" in out
    report = json.loads(run("check", "--json", code=1))
    assert report["problems"][0]["kind"] == "l1.dangling"
    out = run("check", "--fix")
    assert "yes" in out and "0 unfixed" in out
    assert "0 problems" in run("check")
    client.close()
