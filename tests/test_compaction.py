"""L3 compaction: applies deletes physically, merges small files, and is crash-safe."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import tiermem
from tests.conftest import DIM, OpenStore, run_until_killed
from tiermem import schema
from tiermem.failpoints import COMPACT_STEPS
from tiermem.tiers import cold
from tiermem.tiers import manifest as mf


def parquet_text(root: Path) -> str:
    """Every value of every Parquet file under `root`, as one string."""
    files = sorted(root.rglob("*.parquet"))
    assert files
    return "\n".join(json.dumps(pq.read_table(f).to_pylist(), default=str) for f in files)


def to_l3(mem: tiermem.Engine, ids: list[str]) -> None:
    for id_ in ids:  # one move each: one L3 data file each
        mem.mover.move("l1", "l3", [id_])


def add(mem: tiermem.Engine, ns: str, n: int, word: str) -> list[str]:
    res = mem.add_many([{"text": f"{word}-{i}"} for i in range(n)], namespace=ns)
    return [i for i in res.ids if i]


def test_forget_and_compact_leave_no_trace(store: tiermem.Engine) -> None:
    gone = add(store, "gone", 8, "secret")
    kept = add(store, "kept", 4, "public")
    to_l3(store, gone[:5] + kept[:2])
    store.mover.move("l1", "l2", gone[5:7])
    for id_ in gone[:3] + kept[:1]:
        store.get(id_)  # access stats for L3 rows ...
    store.run("checkpoint")  # ... persisted to access.parquet
    store.delete(gone[0])
    assert "secret-" in parquet_text(store.path)
    assert store.forget(namespace="gone") == 7
    store.run("compact")
    text = parquet_text(store.path)
    assert not any(id_ in text for id_ in gone), "an id of the forgotten namespace survived"
    assert "secret-" not in text and '"gone"' not in text
    assert all(f"public-{i}" in text for i in range(2))
    assert {m.id for m in store.scan()} == set(kept)


def test_delete_and_compact_remove_rows(store: tiermem.Engine) -> None:
    ids = add(store, "n", 10, "row")
    to_l3(store, ids)
    store.get(ids[1])
    store.get(ids[5])
    store.run("checkpoint")
    assert store.delete_many(ids[:4]) == 4
    l3 = store.backends.l3
    assert len(l3.files("n")) == 10
    assert store.run("compact").errors == []
    text = parquet_text(store.path)
    assert not any(id_ in text for id_ in ids[:4])
    assert not any(f"row-{i}" in text for i in range(4))
    m = mf.load(l3.root, DIM)
    assert m.deletes == [] and len(m.data) == 1 and m.data[0].rows == 6
    assert not list((l3.root / "data").rglob("del-*.parquet"))
    assert sorted(m.id for m in store.scan()) == sorted(ids[4:])
    # access stats survive the rewrite; a second compaction changes nothing
    assert store.get(ids[5]).access_count == 2
    before = l3.files("n")
    store.run("compact")
    assert l3.files("n") == before


def test_small_files_merge_with_large_row_groups(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem = open_store(overrides={"l3.row_group_size": 1000})
    ids = add(mem, "big", 2500, "r")
    b = mem.backends
    for start in range(0, 2500, 500):  # 5 files of 500 (add's capacity evictions hit L2)
        chunk = ids[start : start + 500]
        b.l3.put(schema.concat([b.l1.get(chunk), b.l2.get(chunk)], DIM))
        b.l1.delete(chunk)
        b.l2.delete(chunk)
    l3 = mem.backends.l3
    assert len(l3.files("big")) == 5
    assert l3.compact_namespace("big") == 2500
    (only,) = l3.files("big")
    meta = pq.ParquetFile(only).metadata
    assert meta.num_rows == 2500 and meta.num_row_groups == 3
    assert [meta.row_group(i).num_rows for i in range(3)] == [1000, 1000, 500]
    assert pq.read_table(only).column("id").to_pylist() == sorted(ids)
    # past COMPACT_FILE_ROWS, files split on id order (tight id ranges for pruning)
    mem.delete(ids[0])
    monkeypatch.setattr(cold, "COMPACT_FILE_ROWS", 1000)
    assert l3.compact_namespace("big") == 2499
    m = mf.load(l3.root, DIM)
    assert [f.rows for f in m.data] == [1000, 1000, 499]
    assert all(a.max_id < b.min_id for a, b in zip(m.data, m.data[1:], strict=False))
    assert len(list(mem.scan(namespace="big"))) == 2499


CHILD = textwrap.dedent(
    """
    import json, os, sys, tiermem
    path, url, prefix, point = sys.argv[1:5]
    mem = tiermem.open(path, embedder=tiermem.HashingEmbedder({dim}),
                       **{{"l1.url": url, "l1.prefix": prefix, "embedding.dim": {dim},
                          "moves.batch": 10, "moves.cold_batch": 10}})
    res = mem.add_many([{{"text": f"memory {{i}}"}} for i in range(30)], namespace="c")
    ids = [i for i in res.ids if i]
    other = [i for i in mem.add_many([{{"text": "x"}}] * 3, namespace="d").ids if i]
    mem.mover.move("l1", "l3", ids)  # several files per namespace
    mem.mover.move("l1", "l3", other[:1])
    mem.mover.move("l1", "l3", other[1:])
    mem.delete_many(ids[:5])
    with open(path + "/acked.json", "w") as fh:
        json.dump({{"live": ids[5:] + other, "deleted": ids[:5]}}, fh)
    os.environ["TIERMEM_FAILPOINT"] = point
    mem.run("compact")
    print("finished without crashing", flush=True)
    """
).format(dim=DIM)


@pytest.mark.slow
@pytest.mark.parametrize("point", [*COMPACT_STEPS, "compact.written:2", "compact.committed:2"])
def test_kill_during_compaction_loses_nothing(
    tmp_path: Path, redis_url: str, prefix: str, open_store: OpenStore, point: str
) -> None:
    path = tmp_path / "store"
    path.mkdir()
    run_until_killed(CHILD, str(path), redis_url, prefix, point)
    acked = json.loads((path / "acked.json").read_text())

    mem = open_store(path)
    seen = [m.id for m in mem.scan()]
    assert sorted(seen) == sorted(acked["live"]), "lost or duplicated memories"
    assert not set(seen) & set(acked["deleted"])
    l3 = mem.backends.l3
    named = mf.load(l3.root, DIM).paths()
    on_disk = {p.relative_to(l3.root).as_posix() for p in (l3.root / "data").rglob("*.*")}
    assert on_disk == named, "orphan or missing files after reopen"
    assert not list(l3.root.rglob("*.tmp"))
    assert mem.check().ok
    # the store stays usable: compaction runs to the end now
    mem.run("compact")
    assert sorted(m.id for m in mem.scan()) == sorted(acked["live"])
    assert len(l3.files("c")) == 1 and mf.load(l3.root, DIM).deletes == []
    assert not any(i in parquet_text(path) for i in acked["deleted"])
