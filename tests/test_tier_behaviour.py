"""One behaviour suite for the Tier Protocol, run against every tier.

The same contract (tiers/base.py) checked on L1 (real Redis), L2 (real
files) and L3 (real Parquet + DuckDB), plus a differential test of each
tier's search against numpy exact search.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import redis

from tests.tables import DIM, T0, by_id, make_table, unit
from tiermem import schema as sch
from tiermem.filters import Filter, parse_where
from tiermem.tiers.base import SCORE, Tier
from tiermem.tiers.cold import ColdTier
from tiermem.tiers.hot import HotTier
from tiermem.tiers.keys import Keys
from tiermem.tiers.warm import WarmTier


@pytest.fixture(params=["l1", "l2", "l3", "l3-list"])
def tier(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, prefix: str
) -> Iterator[Tier]:
    if request.param == "l1":
        t: Tier = HotTier(redis.Redis.from_url(redis_url), Keys(prefix), DIM, redis_url)
    elif request.param == "l2":
        # exact path: this suite compares with numpy exactly; HNSW recall is in test_warm.py
        t = WarmTier(tmp_path / "l2", DIM, exact_threshold=1_000)
    elif request.param == "l3":
        t = ColdTier(tmp_path / "l3", DIM)
    else:  # files of the layout written before the bytes layout: still read
        t = ColdTier(tmp_path / "l3", DIM, vector_layout="list")
    yield t
    t.close()


def ids_of(table: pa.Table) -> list[str]:
    return table.column("id").to_pylist()


def test_put_get_round_trips_every_column(tier: Tier) -> None:
    table = make_table(
        "ns:a",
        5,
        expires_at=[T0 + timedelta(days=1), None, None, None, None],
        source_ids=[["x", "y"], [], [], [], []],
        superseded_by=[None, "z", None, None, None],
        name=["proc", None, None, None, None],
    )
    tier.put(table)
    got = by_id(tier.get(ids_of(table)))
    want = by_id(table)
    assert got.keys() == want.keys()
    for id_, row in want.items():
        for col, value in row.items():
            if col == "embedding":
                assert np.allclose(got[id_][col], value, atol=1e-6)
            else:
                assert got[id_][col] == value, (col, got[id_][col], value)


def test_get_ignores_missing_and_put_upserts(tier: Tier) -> None:
    table = make_table("ns:a", 3)
    tier.put(table)
    assert ids_of(tier.get(["nope"])) == []
    changed = table.set_column(
        table.schema.get_field_index("text"), "text", pa.array(["new"] * 3)
    ).set_column(table.schema.get_field_index("version"), "version", pa.array([2] * 3, pa.int64()))
    tier.put(changed)
    got = tier.get(ids_of(table))
    assert got.num_rows == 3
    assert set(got.column("text").to_pylist()) == {"new"}
    assert set(got.column("version").to_pylist()) == {2}
    assert tier.stats().count == 3


def test_delete_counts_and_forgets(tier: Tier) -> None:
    a, b = make_table("ns:a", 4), make_table("ns:b", 2, seed=1)
    tier.put(a)
    tier.put(b)
    assert tier.delete([*ids_of(a)[:2], "missing"]) == 2
    assert sorted(ids_of(tier.get(ids_of(a)))) == sorted(ids_of(a)[2:])
    assert tier.namespaces() == {"ns:a", "ns:b"}
    assert tier.forget("ns:a") == 2
    assert tier.namespaces() == {"ns:b"}
    assert sorted(ids_of(tier.get(ids_of(b)))) == sorted(ids_of(b))
    assert tier.stats().count == 2


def test_scan_streams_everything_once(tier: Tier) -> None:
    a, b = make_table("ns:a", 30), make_table("ns:b", 7, seed=1)
    tier.put(a)
    tier.put(b)
    every = [i for t in tier.scan() for i in ids_of(t)]
    assert sorted(every) == sorted(ids_of(a) + ids_of(b))
    assert sorted(i for t in tier.scan("ns:b") for i in ids_of(t)) == sorted(ids_of(b))


def test_touch_records_accesses(tier: Tier) -> None:
    table = make_table("ns:a", 2)
    tier.put(table)
    at = T0 + timedelta(days=3)
    first = ids_of(table)[0]
    tier.touch([first], at)
    tier.touch([first, "missing"], at)
    row = by_id(tier.get([first]))[first]
    assert row["last_accessed_at"] == at
    assert row["access_count"] == 0 + 2


def test_search_matches_numpy_and_never_crosses_namespaces(tier: Tier) -> None:
    a, b = make_table("ns:a", 40), make_table("ns:b", 40, seed=1)
    tier.put(a)
    tier.put(b)
    mat = sch.vectors(a)
    rng = np.random.default_rng(7)
    for q in unit(rng, 5):
        got = tier.search("ns:a", q, 5, Filter())
        want = np.argsort(-(mat @ q))[:5]
        assert ids_of(got) == [ids_of(a)[i] for i in want]
        assert np.allclose(got.column(SCORE).to_numpy(), (mat @ q)[want], atol=2e-3)
        assert set(got.column("namespace").to_pylist()) == {"ns:a"}
    assert tier.search("ns:none", unit(rng, 1)[0], 5, Filter()).num_rows == 0


def test_search_applies_every_filter(tier: Tier) -> None:
    n = 12
    table = make_table(
        "ns:a",
        n,
        kind=["semantic" if i < 4 else "episodic" for i in range(n)],
        expires_at=[T0 if i == 5 else None for i in range(n)],
        superseded_by=["x" if i == 6 else None for i in range(n)],
    )
    tier.put(table)
    ids = ids_of(table)
    q = sch.vectors(table)[0]
    now = T0 + timedelta(hours=1)

    def found(**kw: object) -> set[str]:
        return set(ids_of(tier.search("ns:a", q, n, Filter(now=now, **kw))))  # type: ignore[arg-type]

    everything = set(ids) - {ids[5], ids[6]}
    assert found() == everything
    assert found(kinds=frozenset({"semantic"})) == set(ids[:4])
    assert found(where=parse_where({"lang": "en"})) == {i for j, i in enumerate(ids) if j % 2} - {
        ids[5]
    }
    assert found(where=parse_where({"i": {"$gte": 10}})) == {ids[10], ids[11]}
    assert found(since=T0 + timedelta(seconds=8)) == set(ids[8:])
    assert found(until=T0 + timedelta(seconds=2)) == set(ids[:3])
    assert ids[6] in set(
        ids_of(tier.search("ns:a", q, n, Filter(now=now, include_superseded=True)))
    )


def test_find_gives_what_search_gives(tier: Tier) -> None:
    """The read path's `find` (L1/L2 read rows without a table) must agree with
    `search` field for field, nulls, lists and access stats included, across
    several puts (L2: several payload parts)."""
    n = 9
    for seed in range(3):
        tier.put(
            make_table(
                "ns:a",
                n,
                seed=seed,
                expires_at=[T0 + timedelta(days=9) if i % 4 == 0 else None for i in range(n)],
                source_ids=[[f"s{i}", "ü"] if i % 2 else [] for i in range(n)],
                superseded_by=["x" if i == 3 else None for i in range(n)],
                name=["proc" if i % 3 == 0 else None for i in range(n)],
                text=["" if i == 1 else f"t{i} ☕" for i in range(n)],
            )
        )
    tier.touch([f"ns:a-1-{i}" for i in range(4)], T0 + timedelta(days=2))
    rng = np.random.default_rng(3)
    at = T0 + timedelta(days=5)
    for q in unit(rng, 4):
        for flt in (Filter(), Filter(now=T0, include_superseded=True)):
            table = tier.search("ns:a", q, 12, flt)
            found = tier.find("ns:a", q, 12, flt)
            assert found.tier == tier.name
            assert found.ids == ids_of(table)
            assert found.versions == table.column("version").to_pylist()
            assert found.scores == table.column(SCORE).to_pylist()
            want = sch.to_memories(table.drop_columns([SCORE]), tier.name, accessed_at=at)
            assert found.memories(range(len(found.ids)), at) == want
            assert found.memories([2, 0], None) == [
                sch.to_memories(table.drop_columns([SCORE]), tier.name)[i] for i in (2, 0)
            ]
    assert tier.find("ns:none", unit(rng, 1)[0], 5, Filter()).ids == []
