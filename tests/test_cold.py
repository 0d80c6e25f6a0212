"""L3 cold tier: real Parquet files in tmp_path, real DuckDB, no mocks."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiermem.errors import ConfigError, TierMemError, TierUnavailable
from tiermem.filters import Filter, parse_where
from tiermem.ids import new_id
from tiermem.schema import concat, from_columns, schema, vectors
from tiermem.tiers.cold import ColdTier

DIM = 8
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_rows(
    ns: str, n: int, *, seed: int = 0, ids: list[str] | None = None, **cols: Any
) -> pa.Table:
    """`n` rows of `ns` with varied values (nulls, unicode, lists)."""
    rng = np.random.default_rng(seed)
    ids = ids or [new_id() for _ in range(n)]
    base: dict[str, Any] = {
        "id": ids,
        "namespace": [ns] * n,
        "kind": [("episodic", "semantic", "procedural")[i % 3] for i in range(n)],
        "text": [f"mémoire {i} 🧠 日本語" for i in range(n)],
        "embedding": rng.standard_normal((n, DIM)).astype(np.float32),
        "metadata": [f'{{"i":{i},"lang":"{("en", "fr", "de")[i % 3]}"}}' for i in range(n)],
        "importance": [i / max(n, 1) for i in range(n)],
        "created_at": [T0 + timedelta(minutes=i) for i in range(n)],
        "updated_at": [T0 + timedelta(minutes=i, seconds=1) for i in range(n)],
        "last_accessed_at": [T0] * n,
        "access_count": [i % 4 for i in range(n)],
        "expires_at": [None if i % 2 else T0 + timedelta(days=i) for i in range(n)],
        "pinned": [i % 5 == 0 for i in range(n)],
        "version": [1 + i % 2 for i in range(n)],
        "source_ids": [[] if i % 2 else [f"src-{i}", "ü"] for i in range(n)],
        "superseded_by": [None if i % 7 else "newer" for i in range(n)],
        "name": [None if i % 3 else f"nom-{i}" for i in range(n)],
        "tiered_at": [T0 + timedelta(minutes=i, seconds=2) for i in range(n)],
    }
    base.update(cols)
    return from_columns(DIM, base)


def by_id(t: pa.Table) -> pa.Table:
    return t.sort_by("id")


@pytest.fixture
def tier(tmp_path: Path) -> Iterator[ColdTier]:
    t = ColdTier(tmp_path / "l3", DIM)
    yield t
    t.close()


def reopen(t: ColdTier, **kw: Any) -> ColdTier:
    t.close()
    return ColdTier(t.root, DIM, **kw)


def test_round_trip_every_column(tier: ColdTier) -> None:
    rows = make_rows("user:alice", 20)
    tier.put(rows)
    assert by_id(tier.get(rows["id"].to_pylist())).equals(by_id(rows))
    assert by_id(concat(tier.scan("user:alice"), DIM)).equals(by_id(rows))
    tier = reopen(tier)
    got = tier.get([*rows["id"].to_pylist(), "no-such-id"])
    assert got.schema == schema(DIM)
    assert by_id(got).equals(by_id(rows))
    tier.close()


def test_upsert_replaces(tier: ColdTier) -> None:
    rows = make_rows("ns", 3)
    tier.put(rows)
    ids = rows["id"].to_pylist()
    tier.put(make_rows("ns", 1, ids=[ids[1]], text=["replaced"]))
    got = tier.get([ids[1]])
    assert got["text"].to_pylist() == ["replaced"]
    assert tier.stats().count == 3
    assert sorted(concat(tier.scan(), DIM)["id"].to_pylist()) == sorted(ids)


def test_put_repeated_id_keeps_last(tier: ColdTier) -> None:
    id_ = new_id()
    tier.put(make_rows("ns", 2, ids=[id_, id_], text=["first", "last"]))
    assert tier.get([id_])["text"].to_pylist() == ["last"]
    assert tier.stats().count == 1


def test_delete_then_put_again_survives_reopen(tier: ColdTier) -> None:
    rows = make_rows("ns", 4)
    ids = rows["id"].to_pylist()
    tier.put(rows)
    assert tier.delete([ids[0], ids[1], "unknown"]) == 2
    assert tier.delete([ids[0]]) == 0
    assert tier.get(ids[:2]).num_rows == 0
    tier.put(make_rows("ns", 1, ids=[ids[0]], text=["back"]))
    tier = reopen(tier)
    assert tier.get([ids[0]])["text"].to_pylist() == ["back"]
    assert tier.get([ids[1]]).num_rows == 0
    assert tier.stats().count == 3
    tier.close()


def test_forget_isolation(tier: ColdTier) -> None:
    a, b = make_rows("agent:7/user:a", 5), make_rows("user:b", 6, seed=1)
    tier.put(a)
    tier.put(b)
    tier.delete([a["id"][0].as_py()])
    assert tier.forget("agent:7/user:a") == 4
    assert tier.forget("agent:7/user:a") == 0
    assert tier.namespaces() == {"user:b"}
    assert tier.get(a["id"].to_pylist()).num_rows == 0
    assert by_id(tier.get(b["id"].to_pylist())).equals(by_id(b))
    assert all(f.parent.name == "user%3Ab" for f in (tier.root / "data").rglob("*.parquet"))
    assert not (tier.root / "data" / "agent%3A7%2Fuser%3Aa").exists()
    tier = reopen(tier)
    assert tier.stats().count == 6
    tier.close()


def test_manifest_pruning(tier: ColdTier) -> None:
    batches = [make_rows("ns", 5, seed=i) for i in range(3)]  # ids grow batch by batch
    for rows in batches:
        tier.put(rows)
    files = tier.files("ns")
    assert len(files) == 3
    middle = batches[1]["id"][2].as_py()
    assert tier.candidate_files([middle]) == [files[1]]
    assert tier.candidate_files([new_id()]) == []  # newer than every file
    assert tier.get([middle])["id"].to_pylist() == [middle]


def test_orphan_removed_on_reopen(tier: ColdTier) -> None:
    tier.put(make_rows("ns", 2))
    ns_dir = tier.files("ns")[0].parent
    orphan_rows = make_rows("ns", 3, seed=9)
    orphan = ns_dir / "part-orphan.parquet"
    pq.write_table(orphan_rows, orphan)  # a put that crashed before its commit
    (ns_dir / "part-x.parquet.tmp").write_bytes(b"partial")
    (tier.root / "manifest.json.tmp").write_bytes(b"{")
    tier = reopen(tier)
    assert not orphan.exists()
    assert not (ns_dir / "part-x.parquet.tmp").exists()
    assert not (tier.root / "manifest.json.tmp").exists()
    assert tier.get(orphan_rows["id"].to_pylist()).num_rows == 0
    assert tier.stats().count == 2
    tier.close()


def reference(rows: pa.Table, q: np.ndarray, k: int, flt: Filter) -> tuple[list[str], np.ndarray]:
    """Exact cosine top-k by numpy over `rows` passing `flt`."""
    rows = rows.filter(flt.mask(rows))
    mat = vectors(rows).astype(np.float64)
    scores = mat @ q / (np.linalg.norm(mat, axis=1) * np.linalg.norm(q))
    order = np.argsort(-scores, kind="stable")[:k]
    return [rows["id"][int(i)].as_py() for i in order], scores[order]


FILTERS = {
    "none": Filter(include_superseded=True),
    "default": Filter(),
    "kinds": Filter(kinds=frozenset({"semantic", "procedural"})),
    "since_until": Filter(since=T0 + timedelta(minutes=50), until=T0 + timedelta(minutes=200)),
    "expired": Filter(now=T0 + timedelta(days=100)),
    "where_in": Filter(where=parse_where({"lang": {"$in": ["fr", "de"]}})),
    "where_gt": Filter(where=parse_where({"i": {"$gt": 250}, "lang": "en"})),
    "where_rare": Filter(where=parse_where({"i": {"$gte": 290}})),
}


@pytest.mark.parametrize("name", FILTERS)
def test_search_matches_numpy(tier: ColdTier, name: str) -> None:
    rows = make_rows("ns", 300)
    tier.put(rows)
    tier.put(make_rows("other", 50, seed=3))  # never returned
    killed = rows["id"].to_pylist()[::10]
    tier.delete(killed)
    live = rows.filter(pa.compute.invert(pa.compute.is_in(rows["id"], pa.array(killed))))
    q = np.random.default_rng(7).standard_normal(DIM)
    q /= np.linalg.norm(q)
    flt = FILTERS[name]
    got = tier.search("ns", q, 10, flt)
    ids, scores = reference(live, q, 10, flt)
    assert got["id"].to_pylist() == ids
    assert got.schema.field("_score").type == pa.float64()
    np.testing.assert_allclose(got["_score"].to_numpy(), scores, atol=1e-5)
    assert set(got["namespace"].to_pylist()) <= {"ns"}


def test_superseded_filter_on_constant_column(tier: ColdTier) -> None:
    # Regression: DuckDB 2.0 mis-evaluates `IS NULL` on a PLAIN-encoded string
    # column whose non-null values are all equal; the tier must not write one.
    rows = make_rows("ns", 40, superseded_by=[None if i % 3 else "newer" for i in range(40)])
    tier.put(rows)
    got = tier.search("ns", vectors(rows)[0], 40, Filter())
    assert got.num_rows == 26
    assert got["superseded_by"].null_count == 26


def test_search_never_reads_other_namespace(tier: ColdTier) -> None:
    a = make_rows("a", 5)
    tier.put(a)
    tier.put(make_rows("b", 50, embedding=np.tile(vectors(a)[0], (50, 1))))
    got = tier.search("a", vectors(a)[0], 10, Filter(include_superseded=True))
    assert got["namespace"].to_pylist() == ["a"] * 5
    assert tier.search("nobody", vectors(a)[0], 10, Filter()).num_rows == 0


def test_access_stats_persist(tier: ColdTier) -> None:
    rows = make_rows("ns", 3)
    ids = rows["id"].to_pylist()
    tier.put(rows)
    at = T0 + timedelta(days=3)
    tier.touch([ids[1], "unknown"], T0 + timedelta(days=2))
    tier.touch([ids[1]], at)
    expected = rows["access_count"][1].as_py() + 2
    got = tier.get([ids[1]])
    assert got["access_count"].to_pylist() == [expected]
    assert got["last_accessed_at"].to_pylist() == [at]
    unsaved = ColdTier(tier.root, DIM, read_only=True)  # another process: not checkpointed yet
    assert unsaved.get([ids[1]])["access_count"].to_pylist() == [rows["access_count"][1].as_py()]
    unsaved.close()
    tier.checkpoint()
    tier = reopen(tier)
    assert tier.get([ids[1]])["access_count"].to_pylist() == [expected]
    assert tier.search("ns", vectors(rows)[1], 1, Filter(include_superseded=True))[
        "last_accessed_at"
    ].to_pylist() == [at]
    tier.put(make_rows("ns", 1, ids=[ids[1]]))  # a new row brings its own stats
    assert tier.get([ids[1]])["access_count"].to_pylist() == [0]
    tier.close()


def test_read_only_refuses_writes(tmp_path: Path) -> None:
    ro = ColdTier(tmp_path / "none", DIM, read_only=True)
    assert ro.stats().count == 0
    assert not (tmp_path / "none").exists()
    w = ColdTier(tmp_path / "l3", DIM)
    rows = make_rows("ns", 2)
    w.put(rows)
    ro = ColdTier(tmp_path / "l3", DIM, read_only=True)
    before = sorted(p.name for p in (tmp_path / "l3").rglob("*"))
    with pytest.raises(TierMemError):
        ro.put(rows)
    with pytest.raises(TierMemError):
        ro.delete(rows["id"].to_pylist())
    with pytest.raises(TierMemError):
        ro.forget("ns")
    ro.touch(rows["id"].to_pylist(), T0)
    ro.close()
    assert sorted(p.name for p in (tmp_path / "l3").rglob("*")) == before
    w.delete([rows["id"][0].as_py()])
    ro2 = ColdTier(tmp_path / "l3", DIM, read_only=True)
    assert ro2.stats().count == 1
    w.close()


def test_compact_namespace_applies_deletes(tier: ColdTier) -> None:
    for seed in range(3):
        tier.put(make_rows("ns", 4, seed=seed))
    ids = concat(tier.scan("ns"), DIM)["id"].to_pylist()
    tier.delete(ids[:5])
    tier.touch([ids[6]], T0 + timedelta(days=1))
    assert tier.compact_namespace("ns") == 7
    assert len(tier.files("ns")) == 1
    assert tier.deleted().num_rows == 0
    tier = reopen(tier)
    assert sorted(tier.get(ids)["id"].to_pylist()) == sorted(ids[5:])
    assert tier.get([ids[6]])["last_accessed_at"].to_pylist() == [T0 + timedelta(days=1)]
    assert len(list((tier.root / "data").rglob("*.parquet"))) == 1
    tier.close()


def test_backend_errors_are_translated(tier: ColdTier) -> None:
    rows = make_rows("ns", 2)
    tier.put(rows)
    tier.files("ns")[0].write_bytes(b"not parquet")
    with pytest.raises(TierUnavailable, match="part-"):
        tier.get(rows["id"].to_pylist())
    with pytest.raises(TierUnavailable):
        list(tier.scan("ns"))


def test_dimension_is_checked_on_open(tier: ColdTier) -> None:
    tier.put(make_rows("ns", 1))
    with pytest.raises(ConfigError):
        ColdTier(tier.root, DIM + 1)


# -------------------------------------------------------------- model check

OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"), st.lists(st.integers(0, 7), min_size=1, max_size=5), st.integers(0, 1)
        ),
        st.tuples(st.just("delete"), st.lists(st.integers(0, 7), max_size=4), st.just(0)),
        st.tuples(st.just("reopen"), st.just([]), st.just(0)),
        st.tuples(st.just("forget"), st.just([]), st.integers(0, 1)),
    ),
    max_size=10,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_matches_dict_model(ops: list[tuple[str, list[int], int]]) -> None:
    pool = [new_id() for _ in range(8)]
    model: dict[str, tuple[str, str]] = {}  # id -> (namespace, text)
    with tempfile.TemporaryDirectory() as d:
        tier = ColdTier(Path(d), DIM)
        for step, (op, picks, ns_i) in enumerate(ops):
            ns = f"ns{ns_i}"
            ids = [pool[i] for i in picks]
            if op == "put":
                texts = [f"t{step}-{i}" for i in range(len(ids))]
                tier.put(make_rows(ns, len(ids), ids=ids, text=texts))
                model.update({i: (ns, t) for i, t in zip(ids, texts, strict=True)})
            elif op == "delete":
                assert tier.delete(ids) == len({i for i in ids if i in model})
                for i in ids:
                    model.pop(i, None)
            elif op == "forget":
                gone = [i for i, (n, _) in model.items() if n == ns]
                assert tier.forget(ns) == len(gone)
                for i in gone:
                    del model[i]
            else:
                tier = reopen(tier)
            got = tier.get(pool)
            assert {
                i: (n, t)
                for i, n, t in zip(
                    *(got[c].to_pylist() for c in ("id", "namespace", "text")), strict=True
                )
            } == model
            assert tier.stats().count == len(model)
            assert tier.namespaces() == {n for n, _ in model.values()}
        tier.close()
