"""L2 warm tier: durability, recovery, search (exact and HNSW), compaction."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiermem.errors import TierMemError
from tiermem.filters import Filter, parse_where
from tiermem.schema import from_columns, vectors
from tiermem.tiers.warm import WarmTier

DIM = 8
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make(
    ids: list[str],
    ns: str = "a",
    *,
    dim: int = DIM,
    emb: np.ndarray | None = None,
    seed: int = 0,
    **cols: list[Any],
) -> pa.Table:
    """Rows with defaults for every column; `cols` overrides columns."""
    n = len(ids)
    rng = np.random.default_rng(seed)
    base: dict[str, Any] = {
        "id": ids,
        "namespace": [ns] * n,
        "kind": ["episodic"] * n,
        "text": [f"text {i}" for i in ids],
        "embedding": rng.standard_normal((n, dim)).astype(np.float32) if emb is None else emb,
        "metadata": ["{}"] * n,
        "importance": [0.5] * n,
        "created_at": [T0] * n,
        "updated_at": [T0] * n,
        "last_accessed_at": [T0] * n,
        "access_count": [0] * n,
        "expires_at": [None] * n,
        "pinned": [False] * n,
        "version": [1] * n,
        "source_ids": [[] for _ in ids],
        "superseded_by": [None] * n,
        "name": [None] * n,
        "tiered_at": [T0] * n,
    }
    base.update(cols)
    return from_columns(dim, base)


def by_id(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in table.to_pylist()}


def live(tier: WarmTier, ns: str | None = None) -> dict[str, str]:
    """id -> text of every live row, via scan()."""
    out: dict[str, str] = {}
    for t in tier.scan(ns):
        out.update(zip(t.column("id").to_pylist(), t.column("text").to_pylist(), strict=True))
    return out


def test_round_trip_every_column(tmp_path: Path) -> None:
    t = make(
        ["x", "y"],
        ns="user:ålice/ß",
        kind=["semantic", "procedural"],
        text=["héllo 🌍", "line\nbreak\ttab"],
        metadata=['{"k":"v"}', '{"n":[1,2]}'],
        importance=[0.1, 1.0],
        created_at=[T0, T0 + timedelta(seconds=1)],
        updated_at=[T0, T0 + timedelta(microseconds=3)],
        last_accessed_at=[T0, T0 + timedelta(days=1)],
        access_count=[0, 7],
        expires_at=[None, T0 + timedelta(days=9)],
        pinned=[True, False],
        version=[1, 3],
        source_ids=[[], ["p", "q"]],
        superseded_by=[None, "z"],
        name=["名前", None],
    )
    tier = WarmTier(tmp_path, DIM)
    tier.put(t)
    assert by_id(tier.get(["x", "y", "missing"])) == by_id(t)
    tier.close()
    again = WarmTier(tmp_path, DIM)
    got = again.get(["y", "x"])
    assert got.schema.equals(t.schema)
    assert by_id(got) == by_id(t)
    assert again.namespaces() == {"user:ålice/ß"}
    np.testing.assert_array_equal(vectors(got.sort_by("id")), vectors(t))


def test_count_is_live_rows_of_a_kind(tmp_path: Path) -> None:
    """count: live rows only (deleted and overwritten rows drop out), per kind and
    namespace, the same after a reopen."""
    tier = WarmTier(tmp_path, DIM)
    kinds = ["episodic", "semantic", "episodic", "episodic"]
    tier.put(make(["a1", "a2", "a3", "a4"], kind=kinds))
    tier.put(make(["b1"], "b"))
    tier.delete(["a1"])
    tier.put(make(["a3"], kind=["semantic"]))  # the new copy of a3 is a fact
    want = {("a", "episodic"): 1, ("a", "semantic"): 2, ("b", "episodic"): 1, ("c", "x"): 0}
    assert {key: tier.count(*key) for key in want} == want
    again = WarmTier(tmp_path, DIM)
    assert {key: again.count(*key) for key in want} == want


def test_upsert_replaces_and_survives_reopen(tmp_path: Path) -> None:
    tier = WarmTier(tmp_path, DIM)
    tier.put(make(["a1", "a2"], text=["old", "keep"]))
    tier.put(make(["a1"], text=["new"]))
    assert live(tier) == {"a1": "new", "a2": "keep"}
    assert tier.stats().count == 2
    assert live(WarmTier(tmp_path, DIM)) == {"a1": "new", "a2": "keep"}


def test_upsert_across_namespaces_moves_the_id(tmp_path: Path) -> None:
    tier = WarmTier(tmp_path, DIM)
    tier.put(make(["m"], ns="a"))
    tier.put(make(["m"], ns="b"))
    assert live(tier, "a") == {} and "m" in live(tier, "b")
    again = WarmTier(tmp_path, DIM)
    assert live(again, "a") == {} and again.get(["m"])["namespace"].to_pylist() == ["b"]


def test_delete_then_reopen_and_reput(tmp_path: Path) -> None:
    tier = WarmTier(tmp_path, DIM)
    tier.put(make(["d1", "d2", "d3"]))
    assert tier.delete(["d1", "d2", "nope", "d1"]) == 2
    assert live(WarmTier(tmp_path, DIM)) == {"d3": "text d3"}
    tier.put(make(["d1"], text=["back"]))
    assert live(WarmTier(tmp_path, DIM)) == {"d1": "back", "d3": "text d3"}


def test_torn_tails_are_ignored(tmp_path: Path) -> None:
    tier = WarmTier(tmp_path, DIM)
    tier.put(make(["t1", "t2", "t3"]))
    tier.delete(["t1"])
    ns_dir = tmp_path / "a"
    seg = (ns_dir / "seg-00000001.arrow").read_bytes()
    (ns_dir / ".seg-00000002.arrow.tmp").write_bytes(seg[: len(seg) // 2])
    with open(ns_dir / "tombstones.log", "ab") as fh:
        fh.write(b"garbage line\nt2\t1x\n\xff\xfe\n" + b"t3\t")  # last line torn mid-write
    again = WarmTier(tmp_path, DIM)
    assert live(again) == {"t2": "text t2", "t3": "text t3"}
    assert not (ns_dir / ".seg-00000002.arrow.tmp").exists()
    again.delete(["t2"])  # must land on its own line after the torn one was cut
    assert live(WarmTier(tmp_path, DIM)) == {"t3": "text t3"}


def test_access_stats_persist_on_checkpoint(tmp_path: Path) -> None:
    tier = WarmTier(tmp_path, DIM)
    tier.put(make(["s1", "s2"]))
    at = T0 + timedelta(hours=5)
    tier.touch(["s1", "unknown"], at)
    tier.touch(["s1"], at)
    row = tier.get(["s1"]).to_pylist()[0]
    assert (row["access_count"], row["last_accessed_at"]) == (2, at)
    tier.checkpoint()
    tier.touch(["s2"], at)  # after the checkpoint: may be lost on a crash (documented)
    again = WarmTier(tmp_path, DIM)
    rows = [r for t in again.scan() for r in t.to_pylist()]
    stats = {r["id"]: (r["access_count"], r["last_accessed_at"]) for r in rows}
    assert stats["s1"] == (2, at)
    # an upsert after the checkpoint brings its own stats; the old ones must not win
    again.put(make(["s1"], access_count=[0]))
    assert WarmTier(tmp_path, DIM).get(["s1"])["access_count"].to_pylist() == [0]


def test_namespace_isolation_and_forget(tmp_path: Path) -> None:
    emb = np.ones((3, DIM), np.float32)
    tier = WarmTier(tmp_path, DIM)
    tier.put(make(["a1", "a2", "a3"], ns="a", emb=emb))
    tier.put(make(["b1", "b2", "b3"], ns="b", emb=emb))
    hits = tier.search("a", np.ones(DIM, np.float32), 10, Filter())
    assert set(hits["id"].to_pylist()) == {"a1", "a2", "a3"}
    assert tier.forget("a") == 3
    assert tier.forget("a") == 0
    assert tier.search("a", np.ones(DIM, np.float32), 10, Filter()).num_rows == 0
    assert tier.get(["a1", "b1"])["id"].to_pylist() == ["b1"]
    again = WarmTier(tmp_path, DIM)
    assert again.namespaces() == {"b"} and len(live(again)) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".trash-")]


def test_leftover_trash_is_removed_on_open(tmp_path: Path) -> None:
    (tmp_path / ".trash-dead" / "x").mkdir(parents=True)
    WarmTier(tmp_path, DIM)
    assert not (tmp_path / ".trash-dead").exists()


def test_exact_search_matches_numpy(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((300, DIM)).astype(np.float32) * 3  # not unit length
    ids = [f"e{i:03d}" for i in range(300)]
    tier = WarmTier(tmp_path, DIM)
    tier.put(make(ids, emb=emb))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for _ in range(10):
        q = rng.standard_normal(DIM).astype(np.float32)
        ref = unit @ (q / np.linalg.norm(q))
        top = np.argsort(-ref)[:7]
        got = tier.search("a", q, 7, Filter())
        assert got["id"].to_pylist() == [ids[i] for i in top]
        np.testing.assert_allclose(got["_score"].to_numpy(), ref[top], rtol=1e-5)
        assert got.schema.field("_score").type == pa.float64()
    assert tier.index_builds == 0


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    pick = rng.integers(0, 20, n)
    return (centres[pick] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)


def big_table(n: int = 2000, dim: int = 32) -> pa.Table:
    ids = [f"h{i:05d}" for i in range(n)]
    idx = np.arange(n)
    return make(
        ids,
        dim=dim,
        emb=clustered(n, dim, 1),
        kind=[("episodic", "semantic")[i % 2] for i in idx],
        metadata=[json.dumps({"g": int(i % 3)}) for i in idx],
        superseded_by=[("x" if i % 5 == 0 else None) for i in idx],
        expires_at=[(T0 if i % 7 == 0 else None) for i in idx],
    )


FILTERS = [
    Filter(),
    Filter(kinds=frozenset({"semantic"})),
    Filter(where=parse_where({"g": {"$in": [1, 2]}})),
    Filter(include_superseded=True, now=T0 + timedelta(days=1)),
    Filter(kinds=frozenset({"episodic"}), where=parse_where({"g": 0}), now=T0),
]


@pytest.mark.parametrize("flt", FILTERS)
def test_hnsw_recall_and_filters(tmp_path: Path, flt: Filter) -> None:
    table = big_table()
    ann = WarmTier(tmp_path / "ann", 32, exact_threshold=50)
    exact = WarmTier(tmp_path / "exact", 32, exact_threshold=10**9)
    ann.put(table)
    exact.put(table)
    passing = {r for r, ok in zip(table["id"].to_pylist(), flt.mask(table), strict=True) if ok}
    queries = clustered(50, 32, 2)
    hits = 0
    for q in queries:
        got = ann.search("a", q, 10, flt)["id"].to_pylist()
        want = exact.search("a", q, 10, flt)["id"].to_pylist()
        assert len(got) == 10 and set(got) <= passing
        hits += len(set(got) & set(want))
    assert hits / (10 * len(queries)) >= 0.95
    assert ann.index_builds == 1 and exact.index_builds == 0


def test_hnsw_selective_filter_and_deletes(tmp_path: Path) -> None:
    table = big_table()
    tier = WarmTier(tmp_path, 32, exact_threshold=50)
    tier.put(table)
    q = clustered(1, 32, 3)[0]
    first = tier.search("a", q, 10, Filter(include_superseded=True))["id"].to_pylist()
    tier.delete(first[:5])
    after = tier.search("a", q, 10, Filter(include_superseded=True))["id"].to_pylist()
    assert not set(after) & set(first[:5]) and len(after) == 10
    only = Filter(where=parse_where({"g": 2}), kinds=frozenset({"semantic"}))
    got = tier.search("a", q, 500, only)  # more than pass after post-filtering ANN hits
    assert got.num_rows == int(only.mask(tier.get(table["id"].to_pylist())).sum())


def test_index_checkpoint_reused_or_rebuilt(tmp_path: Path) -> None:
    table = big_table(400)
    q = clustered(1, 32, 4)[0]
    tier = WarmTier(tmp_path, 32, exact_threshold=50)
    tier.put(table)
    want = tier.search("a", q, 10, Filter())["id"].to_pylist()
    tier.delete([want[0]])
    tier.checkpoint()
    reopened = WarmTier(tmp_path, 32, exact_threshold=50)
    assert reopened.search("a", q, 10, Filter())["id"].to_pylist()[:9] == want[1:10]
    assert reopened.index_builds == 0  # loaded from index.usearch
    reopened.put(make(["late"], dim=32, emb=q[None, :]))  # not checkpointed: index goes stale
    stale = WarmTier(tmp_path, 32, exact_threshold=50)
    assert stale.search("a", q, 1, Filter())["id"].to_pylist() == ["late"]
    assert stale.index_builds == 1
    stale.checkpoint()
    (tmp_path / "a" / "index.json").unlink()
    missing = WarmTier(tmp_path, 32, exact_threshold=50)
    missing.search("a", q, 1, Filter())
    assert missing.index_builds == 1


def test_read_only_never_writes(tmp_path: Path) -> None:
    ro = WarmTier(tmp_path / "nothing", DIM, read_only=True)
    assert not (tmp_path / "nothing").exists() and ro.namespaces() == set()
    WarmTier(tmp_path / "d", DIM).put(make(["r1"]))
    before = sorted(p.name for p in (tmp_path / "d" / "a").iterdir())
    ro = WarmTier(tmp_path / "d", DIM, read_only=True)
    for call in (
        lambda: ro.put(make(["r2"])),
        lambda: ro.delete(["r1"]),
        lambda: ro.forget("a"),
    ):
        with pytest.raises(TierMemError, match="read-only"):
            call()
    ro.touch(["r1"], T0 + timedelta(days=1))  # documented no-op
    ro.close()
    assert ro.get(["r1"])["access_count"].to_pylist() == [0]
    assert sorted(p.name for p in (tmp_path / "d" / "a").iterdir()) == before


def test_interrupted_compaction_gives_same_live_set(tmp_path: Path) -> None:
    tier = WarmTier(tmp_path, DIM)
    for i in range(4):
        tier.put(make([f"c{i}a", f"c{i}b"]))
    tier.delete(["c0a", "c1a", "c2a"])
    snapshot = tmp_path.parent / "snapshot"
    shutil.copytree(tmp_path / "a", snapshot)
    expected = live(tier)
    tier.checkpoint()  # 3/8 dead: compacts into one segment
    segs = sorted(p.name for p in (tmp_path / "a").glob("seg-*.arrow"))
    assert segs == ["seg-00000005.arrow"]
    # crash right after the commit point: old segments and tombstones still there
    for p in snapshot.iterdir():
        if p.name.startswith("seg-") or p.name == "tombstones.log":
            shutil.copy(p, tmp_path / "a" / p.name)
    again = WarmTier(tmp_path, DIM)
    assert live(again) == expected
    assert sorted(p.name for p in (tmp_path / "a").glob("seg-*.arrow")) == segs


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 9), st.sampled_from("ab"), st.integers(0, 99)),
        st.tuples(st.just("delete"), st.integers(0, 9)),
        st.tuples(st.just("checkpoint")),
        st.tuples(st.just("reopen")),
        st.tuples(st.just("crash")),  # reopen without close(): no checkpoint
    ),
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_random_ops_match_a_dict_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Any]
) -> None:
    root = tmp_path_factory.mktemp("model")
    tier = WarmTier(root, DIM)
    model: dict[str, tuple[str, str]] = {}  # id -> (namespace, text)
    for op in ops:
        if op[0] == "put":
            _, i, ns, v = op
            tier.put(make([f"k{i}"], ns=ns, text=[f"v{v}"]))
            model[f"k{i}"] = (ns, f"v{v}")
        elif op[0] == "delete":
            assert tier.delete([f"k{op[1]}"]) == int(model.pop(f"k{op[1]}", None) is not None)
        elif op[0] == "checkpoint":
            tier.checkpoint()
        else:
            if op[0] == "reopen":
                tier.close()
            tier = WarmTier(root, DIM)
        for ns in "ab":
            assert live(tier, ns) == {k: t for k, (n, t) in model.items() if n == ns}
        assert tier.stats().count == len(model)


def test_get_and_search_gather_across_many_segments(tmp_path: Path) -> None:
    """Rows spread over segments come back in the asked order, with every column."""
    w = WarmTier(tmp_path, DIM, exact_threshold=10**9)
    tables = [make([f"s{s}-{i}" for i in range(5)], seed=s) for s in range(4)]
    for t in tables:
        w.put(t)
    want = ["s3-1", "s0-4", "s2-0", "s0-0", "s3-4"]
    got = w.get(want)
    assert sorted(got.column("id").to_pylist()) == sorted(want)
    rows = by_id(got)
    for t in tables:
        for row in t.to_pylist():
            if row["id"] in rows:
                assert rows[row["id"]]["text"] == row["text"]
                assert rows[row["id"]]["embedding"] == pytest.approx(row["embedding"], rel=1e-5)
    q = vectors(tables[2])[3]
    hits = w.search("a", q, 3, Filter())
    assert hits.column("id")[0].as_py() == "s2-3"
    assert hits.num_rows == 3


def test_expiry_and_supersession_masks_follow_later_writes(tmp_path: Path) -> None:
    """The per-row expiry/supersession arrays give what Filter.mask gives."""
    w = WarmTier(tmp_path, DIM, exact_threshold=10**9)
    emb = np.eye(DIM, dtype=np.float32)[:4]
    w.put(make(["a", "b", "c", "d"], emb=emb))
    now = T0 + timedelta(days=1)
    flt = Filter(now=now)
    q = np.ones(DIM, dtype=np.float32)
    assert sorted(w.search("a", q, 10, flt).column("id").to_pylist()) == ["a", "b", "c", "d"]
    w.put(make(["b"], emb=emb[1:2], expires_at=[T0]))  # expired by `now`
    w.put(make(["c"], emb=emb[2:3], superseded_by=["a"]))
    w.put(make(["e"], emb=emb[3:4], expires_at=[now + timedelta(seconds=1)]))
    assert sorted(w.search("a", q, 10, flt).column("id").to_pylist()) == ["a", "d", "e"]
    assert sorted(w.search("a", q, 10, Filter()).column("id").to_pylist()) == ["a", "b", "d", "e"]
    everything = Filter(include_superseded=True)
    assert len(w.search("a", q, 10, everything)) == 5
    w.close()
    r = WarmTier(tmp_path, DIM, exact_threshold=10**9, read_only=True)
    assert sorted(r.search("a", q, 10, flt).column("id").to_pylist()) == ["a", "d", "e"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 30),
    unit=st.booleans(),
    zeros=st.sets(st.integers(0, 29), max_size=3),
    dead=st.sets(st.integers(0, 29), max_size=10),
    kinds=st.sampled_from([None, frozenset({"semantic"})]),
    k=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_exact_search_matches_numpy_for_any_rows(
    tmp_path_factory: pytest.TempPathFactory,
    n: int,
    unit: bool,
    zeros: set[int],
    dead: set[int],
    kinds: frozenset[str] | None,
    k: int,
    seed: int,
) -> None:
    """Exact search = cosine over the live rows passing the filter, best k, whether the
    namespace's vectors are all unit (a dot is the cosine), scaled or zero, with
    deleted rows and without."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, DIM)).astype(np.float32)
    if unit:
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    else:
        emb *= rng.uniform(0.1, 10, (n, 1)).astype(np.float32)
        emb[[i for i in zeros if i < n]] = 0
    ids = [f"r{i}" for i in range(n)]
    kind = ["semantic" if i % 3 else "episodic" for i in range(n)]
    tier = WarmTier(tmp_path_factory.mktemp("exact"), DIM, exact_threshold=10**9)
    tier.put(make(ids, emb=emb, kind=kind))
    tier.delete([ids[i] for i in dead if i < n])
    q = rng.standard_normal(DIM).astype(np.float32)
    got = tier.search("a", q, k, Filter(kinds=kinds))
    norms = np.linalg.norm(emb, axis=1)
    cos = (emb @ (q / np.linalg.norm(q))) / np.where(norms > 0, norms, 1)
    ok = [i for i in range(n) if i not in dead and (kinds is None or kind[i] in kinds)]
    want = sorted(ok, key=lambda i: -cos[i])[:k]
    assert got.num_rows == len(want)
    np.testing.assert_allclose(got.column("_score").to_numpy(), cos[want], atol=1e-5)
    # the same rows, up to the order of near-equal scores
    assert {int(i[1:]) for i in got.column("id").to_pylist()} == set(want) or np.allclose(
        np.sort(cos[[int(i[1:]) for i in got.column("id").to_pylist()]]), np.sort(cos[want])
    )
