"""Export / import: a round trip into a fresh store gives identical memories."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import redis

import tiermem
from tests.conftest import DIM, Cli, OpenStore, drop_prefix
from tiermem import schema
from tiermem.errors import ValidationError
from tiermem.model import Memory
from tiermem.transfer import RowError, import_file

NS_A, NS_B = "user:alice", "team/b=1"


@pytest.fixture
def fresh(
    tmp_path: Path, redis_url: str, open_store: OpenStore, redis_client: redis.Redis
) -> Iterator[OpenStore]:
    """Open stores in new data dirs with new Redis prefixes."""
    prefixes: list[str] = []

    def _open(**kw: Any) -> tiermem.Engine:
        p = f"tmtest:{uuid.uuid4().hex[:12]}"
        prefixes.append(p)
        return open_store(tmp_path / p.replace(":", "-"), overrides={"l1.prefix": p}, **kw)

    yield _open
    for p in prefixes:
        drop_prefix(redis_client, p)


def populate(mem: tiermem.Engine) -> list[str]:
    """Memories of every shape, over two namespaces and all three tiers."""
    meta: dict[str, Any] = {"tags": ["a", "b", 3, None, 2.5], "none": None, "ünï": "çødé ✓"}
    ids = []
    for i in range(12):
        ns = NS_A if i % 2 else NS_B
        m = mem.add(
            f"memory {i}: naïve café 日本語 🚀" if i % 3 == 0 else f"memory {i}",
            namespace=ns,
            kind=("episodic", "semantic", "procedural")[i % 3],
            metadata={**meta, "i": i} if i % 4 else {},
            importance=i / 12,
            ttl=3600 * (i + 1) if i % 5 == 0 else None,
            pinned=i % 3 == 1,
            name=f"name-{i}" if i % 4 == 0 else None,
        )
        ids.append(m.id)
    newer = mem.add("a newer version", namespace=NS_A, supersedes=ids[1])  # ids[1] -> L3
    ids.append(newer.id)
    # source_ids are set by consolidation; write one directly
    row = mem.backends.l1.get([ids[0]])
    col = pa.array([[ids[2], ids[4]]], pa.list_(pa.string()))
    mem.backends.l1.put(row.set_column(row.schema.get_field_index("source_ids"), "source_ids", col))
    for id_ in ids[3:6]:
        mem.demote(id_, to="l2")
    for id_ in ids[6:9]:
        mem.demote(id_, to="l3")
    for id_ in (ids[0], ids[4], ids[7], ids[7]):
        mem.get(id_)  # access stats in every tier
    mem.update(ids[5], text="edited in L2")  # version 2
    tiers = {m.tier for m in mem.scan()}
    assert tiers == {"l1", "l2", "l3"}
    return ids


def snapshot(mem: tiermem.Engine, namespace: str | None = None) -> dict[str, Memory]:
    return {m.id: m.model_copy(update={"tier": "l1"}) for m in mem.scan(namespace=namespace)}


def assert_same(a: dict[str, Memory], b: dict[str, Memory]) -> None:
    assert sorted(a) == sorted(b)
    for id_, m in a.items():
        other = b[id_]
        for field in Memory.model_fields:
            if field == "tier":
                continue
            x, y = getattr(m, field), getattr(other, field)
            if field == "embedding":
                assert np.array_equal(x, y), (id_, field)
            else:
                assert x == y, (id_, field, x, y)


@pytest.mark.parametrize("ext", ["parquet", "jsonl"])
def test_round_trip_into_fresh_store(
    store: tiermem.Engine, fresh: OpenStore, tmp_path: Path, ext: str
) -> None:
    populate(store)
    before = snapshot(store)
    path = tmp_path / f"out.{ext}"
    seen: list[tuple[int, int]] = []
    assert store.export(path, progress=lambda d, t: seen.append((d, t))) == len(before)
    assert seen and seen[-1] == (len(before), len(before))

    other = fresh()
    assert other.import_(path) == len(before)
    assert {m.tier for m in other.scan()} == {"l1"}
    assert_same(before, snapshot(other))
    # a second import skips every id
    result = import_file(other, path)
    assert (result.imported, result.skipped, result.rows) == (0, len(before), len(before))
    assert len(snapshot(other)) == len(before)


def test_round_trip_into_cold_tier(store: tiermem.Engine, fresh: OpenStore, tmp_path: Path) -> None:
    populate(store)
    before = snapshot(store)
    store.export(tmp_path / "out.parquet")
    other = fresh()
    assert other.import_(tmp_path / "out.parquet", tier="l3") == len(before)
    assert {m.tier for m in other.scan()} == {"l3"}
    assert_same(before, snapshot(other))


def test_jsonl_format(store: tiermem.Engine, tmp_path: Path) -> None:
    ids = populate(store)
    store.export(tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    first = next(r for r in rows if r["id"] == ids[0])
    assert isinstance(first["embedding"], list) and len(first["embedding"]) == DIM
    assert first["created_at"].endswith("Z") and "T" in first["created_at"]
    assert first["source_ids"] == [ids[2], ids[4]]
    assert "tier" not in first
    assert isinstance(first["metadata"], dict)


def test_namespace_filter(store: tiermem.Engine, fresh: OpenStore, tmp_path: Path) -> None:
    populate(store)
    path = tmp_path / "a.parquet"
    n = store.export(path, namespace=NS_A)
    table = pq.read_table(path)
    assert n == table.num_rows == len(snapshot(store, NS_A))
    assert set(table["namespace"].to_pylist()) == {NS_A}
    other = fresh()
    other.import_(path)
    assert_same(snapshot(store, NS_A), snapshot(other))
    # the import side filters too
    store.export(tmp_path / "all.jsonl")
    third = fresh()
    result = import_file(third, tmp_path / "all.jsonl", NS_B)
    assert result.imported == len(snapshot(store, NS_B)) and result.filtered == n
    assert_same(snapshot(store, NS_B), snapshot(third))


def _rows(mem: tiermem.Engine, tmp_path: Path) -> list[dict[str, Any]]:
    mem.export(tmp_path / "good.jsonl")
    return [json.loads(x) for x in (tmp_path / "good.jsonl").read_text().splitlines()]


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("row", "change", "field"),
    [
        (1, {"embedding": [0.5] * (DIM - 1)}, "embedding"),
        (3, {"namespace": "../etc"}, "namespace"),
        (2, {"text": "   "}, "text"),
        (4, {"created_at": "2025-01-01T00:00:00"}, "created_at"),
        (2, {"surprise": 1}, "surprise"),
        (3, {"kind": "dream"}, "kind"),
        (1, {"metadata": {"nested": {"no": 1}}}, "metadata"),
    ],
)
def test_bad_rows_write_nothing(
    store: tiermem.Engine,
    fresh: OpenStore,
    tmp_path: Path,
    row: int,
    change: dict[str, Any],
    field: str,
) -> None:
    populate(store)
    rows = _rows(store, tmp_path)
    rows[row - 1] = {**rows[row - 1], **change}
    other = fresh()
    with pytest.raises(RowError) as info:
        other.import_(_write_jsonl(tmp_path / "bad.jsonl", rows))
    assert info.value.row == row and info.value.field == field
    assert f"row {row}" in str(info.value)
    assert list(other.scan()) == []


def test_bad_files_write_nothing(store: tiermem.Engine, fresh: OpenStore, tmp_path: Path) -> None:
    populate(store)
    rows = _rows(store, tmp_path)
    other = fresh()
    with pytest.raises(RowError, match="row 2: line: not valid JSON"):
        other.import_(_write_jsonl(tmp_path / "x.jsonl", [rows[0], "{not json", rows[1]]))
    with pytest.raises(RowError, match="row 2: id: repeats the id of row 1"):
        other.import_(_write_jsonl(tmp_path / "y.jsonl", [rows[0], rows[0]]))
    with pytest.raises(ValidationError, match="unknown extension"):
        other.import_(tmp_path / "good.csv")
    with pytest.raises(ValidationError, match="unknown extension"):
        store.export(tmp_path / "out.csv")
    with pytest.raises(ValidationError, match="no such file"):
        other.import_(tmp_path / "missing.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValidationError, match="not a readable Parquet"):
        other.import_(tmp_path / "junk.parquet")
    # Parquet of another dimension, and a bad namespace on its row 3
    store.export(tmp_path / "good.parquet")
    table = pq.read_table(tmp_path / "good.parquet")
    mat = schema.vectors(table)[:, : DIM // 2].copy()
    small = table.set_column(
        table.schema.get_field_index("embedding"), "embedding", schema.embedding_array(mat)
    )
    pq.write_table(small, tmp_path / "small.parquet")
    with pytest.raises(RowError, match="row 1: embedding: has dimension 16"):
        other.import_(tmp_path / "small.parquet")
    names = table["namespace"].to_pylist()
    names[2] = "bad namespace!"
    bad = table.set_column(table.schema.get_field_index("namespace"), "namespace", pa.array(names))
    pq.write_table(bad, tmp_path / "badns.parquet")
    with pytest.raises(RowError, match="row 3: namespace"):
        other.import_(tmp_path / "badns.parquet")
    assert list(other.scan()) == []
    assert not list(tmp_path.glob(".*.tmp")), "failed export left a temp file"
    # a good file after all that still imports
    assert other.import_(tmp_path / "good.parquet") == table.num_rows


def test_pure_pyarrow_parquet_with_defaults(fresh: OpenStore, tmp_path: Path) -> None:
    """A minimal hand-made file: only id, namespace, text, embedding."""
    vec = np.random.default_rng(1).normal(size=(2, DIM)).astype(np.float32)
    pq.write_table(
        pa.table(
            {
                "id": ["x-1", "x-2"],
                "namespace": ["n", "n"],
                "text": ["one", "two"],
                "embedding": pa.array(vec.tolist(), pa.list_(pa.float32())),
            }
        ),
        tmp_path / "min.parquet",
    )
    mem = fresh()
    assert mem.import_(tmp_path / "min.parquet") == 2
    m = mem.get("x-1")
    assert (m.kind, m.version, m.pinned, m.metadata, m.tier) == ("episodic", 1, False, {}, "l1")
    assert pc.all(pc.equal(pa.array(m.embedding), pa.array(vec[0]))).as_py()


# -- CLI -----------------------------------------------------------------------------


def _cli(tmp: Path, redis_url: str, name: str) -> Cli:
    return Cli(tmp / name, redis_url, f"tmtest:{uuid.uuid4().hex[:12]}")


def test_cli_round_trip(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> None:
    a, b = _cli(tmp_path, redis_url, "a"), _cli(tmp_path, redis_url, "b")
    try:
        for text, ns in [("tea", "x"), ("coffee", "x"), ("juice", "y")]:
            a("add", text, "--ns", ns)
        out = tmp_path / "dump.parquet"
        assert "exported 3 memories" in a("export", str(out)).stdout
        assert "exported 2 memories" in a("export", str(tmp_path / "x.jsonl"), "--ns", "x").stdout
        assert "imported 3 memories" in b("import", str(out)).stdout
        again = b("import", str(out)).stdout
        assert "imported 0" in again and "skipped 3" in again
        stats = json.loads(b("stats", "--json").stdout)
        assert stats["tiers"]["l1"]["count"] == 3
        bad = b("import", str(tmp_path / "dump.txt"), code=1)
        assert "unknown extension" in bad.stderr
        (tmp_path / "bad.jsonl").write_text('{"id": "q"}\n')
        assert "row 1" in b("import", str(tmp_path / "bad.jsonl"), code=1).stderr
    finally:
        drop_prefix(redis_client, a.prefix)
        drop_prefix(redis_client, b.prefix)
