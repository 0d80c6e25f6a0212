"""L1 (HotTier) against a real Redis (conftest.redis_url), under a unique prefix."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.tables import DIM, T0, by_id, make_table, unit
from tiermem import schema as sch
from tiermem.errors import TierUnavailable
from tiermem.filters import Filter, parse_where
from tiermem.ids import to_us
from tiermem.tiers.base import SCORE
from tiermem.tiers.hot import HotTier
from tiermem.tiers.hot_cache import CacheMode
from tiermem.tiers.keys import Keys

# redis-py's default client retries with backoff for seconds before failing
NO_RETRY = Retry(NoBackoff(), 0)


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


@pytest.fixture
def tier(hot_tier: HotTier) -> HotTier:
    return hot_tier


def test_round_trip_every_column_with_nulls_and_unicode(tier: HotTier) -> None:
    t = make_table(
        "user:ä",
        3,
        expires_at=[None, T0 + timedelta(days=1), None],
        source_ids=[[], ["a", "b"], ["ü"]],
        superseded_by=[None, None, "x-1"],
        name=["proc ✓", None, None],
        metadata=[sch.dump_metadata({"k": "v ✓", "n": [1, 2]}), "{}", '{"x":null}'],
    )
    tier.put(t)
    got = tier.get([*t.column("id").to_pylist(), "missing"])
    assert got.schema == sch.schema(DIM)
    assert by_id(got) == by_id(t)


def test_get_is_exact_for_vectors_and_times(tier: HotTier) -> None:
    t = make_table("a", 5, importance=[0.1, 1 / 3, 0.5, 0.9999999999, 0.0])
    tier.put(t)
    got = tier.get(t.column("id").to_pylist()[::-1]).sort_by("id")
    exp = t.sort_by("id")
    assert np.array_equal(sch.vectors(got), sch.vectors(exp))
    assert got.equals(exp)


def test_upsert_replaces_whole_record(tier: HotTier, keys: Keys, client: redis.Redis) -> None:
    first = make_table("a", 2, name=["n0", "n1"], expires_at=[T0, T0])
    tier.put(first)
    second = make_table("a", 2, text=["new0", "new1"], version=[2, 2])
    tier.put(second)
    got = by_id(tier.get(second.column("id").to_pylist()))
    assert got == by_id(second)  # name / expires_at from the first put are gone
    assert client.zcard(keys.recency("a")) == 2
    assert tier.stats().count == 2


def test_delete_and_forget_are_isolated_per_namespace(tier: HotTier) -> None:
    a, b = make_table("a", 30, seed=1), make_table("b", 30, seed=2)
    tier.put(pa.concat_tables([a, b]))
    assert tier.namespaces() == {"a", "b"}
    a_ids = a.column("id").to_pylist()
    assert tier.delete([*a_ids[:5], "nope", a_ids[0]]) == 5
    assert tier.get(a_ids[:5]).num_rows == 0
    assert tier.forget("a") == 25
    assert tier.namespaces() == {"b"}
    assert tier.ids("a") == [] and tier.get(a_ids).num_rows == 0
    assert by_id(tier.get(b.column("id").to_pylist())) == by_id(b)
    q = sch.vectors(a)[7]
    assert tier.search("a", q, 10, Filter()).num_rows == 0
    assert set(tier.search("b", q, 100, Filter()).column("namespace").to_pylist()) == {"b"}
    assert tier.stats().count == 30 and tier.stats().namespaces == 1


def test_delete_last_row_empties_namespace(tier: HotTier) -> None:
    t = make_table("solo", 1)
    tier.put(t)
    assert tier.delete(t.column("id").to_pylist()) == 1
    assert tier.namespaces() == set()
    assert tier.stats().count == 0


def test_touch_updates_hash_and_zsets(tier: HotTier) -> None:
    t = make_table("a", 3)
    tier.put(t)
    ids = t.column("id").to_pylist()
    at = T0 + timedelta(hours=1)
    tier.touch([ids[0], ids[2], ids[2], "unknown"], at)
    rows = by_id(tier.get(ids))
    assert rows[ids[0]]["access_count"] == 1 and rows[ids[0]]["last_accessed_at"] == at
    assert rows[ids[2]]["access_count"] == 4 and rows[ids[2]]["last_accessed_at"] == at
    assert rows[ids[1]]["access_count"] == 1 and rows[ids[1]]["last_accessed_at"] != at
    stats = tier.access_stats("a")
    assert stats[ids[0]] == (to_us(at), 1) and stats[ids[2]] == (to_us(at), 4)
    assert stats[ids[1]] == (to_us(T0 + timedelta(seconds=1)), 1)


def in_use(client: redis.Redis) -> int:
    """Connections of the client's pool handed out and not returned."""
    return len(client.connection_pool._in_use_connections)  # type: ignore[attr-defined]


def test_touch_later_runs_in_redis_before_wait_and_frees_its_connection(
    tier: HotTier, client: redis.Redis
) -> None:
    """Sent at once (Redis applies it while the caller works), the connection held
    until `wait`, which returns it; a script Redis lost (SCRIPT FLUSH) is loaded again."""
    t = make_table("a", 2)
    tier.put(t)
    ids = t.column("id").to_pylist()
    before = {i: r["access_count"] for i, r in by_id(tier.get(ids)).items()}
    at = T0 + timedelta(hours=1)
    client.script_flush()
    later = tier.touch_later(ids, at, namespaces=["a", "a"])
    assert in_use(client) == 1
    later.wait()
    assert in_use(client) == 0
    rows = by_id(tier.get(ids))
    assert {i: (r["access_count"], r["last_accessed_at"]) for i, r in rows.items()} == {
        i: (n + 1, at) for i, n in before.items()
    }
    tier.touch_later(ids, at).cancel()  # given up: the connection goes too
    assert in_use(client) == 0


@pytest.mark.parametrize("hinted", [False, True])
def test_touch_does_not_resurrect_deleted_or_bump_version(
    tier: HotTier, keys: Keys, client: redis.Redis, hinted: bool
) -> None:
    """Also when the caller names the namespaces (no directory lookup): the
    script itself skips a record that is gone."""
    t = make_table("a", 2)
    tier.put(t)
    ids = t.column("id").to_pylist()
    tier.delete([ids[0]])
    version = client.get(keys.version("a"))
    tier.touch(ids, T0, namespaces=["a", "a"] if hinted else None)
    assert client.get(keys.version("a")) == version
    assert not client.exists(keys.record("a", ids[0]))
    assert tier.ids("a") == [ids[1]]
    assert by_id(tier.get([ids[1]]))[ids[1]]["access_count"] == 1 + 1


def test_search_matches_numpy_reference(tier: HotTier) -> None:
    t = make_table("a", 200, seed=3)
    tier.put(pa.concat_tables([t, make_table("b", 50, seed=4)]))
    mat = sch.vectors(t).astype(np.float64)
    q = unit(np.random.default_rng(9), 1)[0]
    ref = mat @ q / np.linalg.norm(mat, axis=1)
    got = tier.search("a", q, 10, Filter())
    assert got.column_names == [*sch.COLUMNS, SCORE]
    assert got.schema.field(SCORE).type == pa.float64()
    order = np.argsort(-ref)[:10]
    assert got.column("id").to_pylist() == [t.column("id")[int(i)].as_py() for i in order]
    assert np.allclose(got.column(SCORE).to_numpy(), ref[order], atol=1e-6)
    assert tier.search("a", q, 0, Filter()).num_rows == 0
    assert tier.search("a", q, 1000, Filter()).num_rows == 200


def test_search_zero_vector_scores_zero(tier: HotTier) -> None:
    emb = unit(np.random.default_rng(1), 3)
    emb[1] = 0
    tier.put(make_table("a", 3, embedding=emb))
    got = tier.search("a", emb[0], 3, Filter())
    scores = dict(zip(got.column("id").to_pylist(), got.column(SCORE).to_pylist(), strict=True))
    assert scores["a-0-1"] == 0.0 and scores["a-0-0"] == pytest.approx(1.0)


def test_search_respects_filters(tier: HotTier) -> None:
    n = 12
    now = T0 + timedelta(days=1)
    t = make_table(
        "a",
        n,
        kind=["semantic" if i < 6 else "episodic" for i in range(n)],
        expires_at=[now - timedelta(seconds=1) if i == 1 else None for i in range(n)],
        superseded_by=["z" if i == 2 else None for i in range(n)],
    )
    tier.put(t)
    q = sch.vectors(t)[0]
    flt = Filter(kinds=frozenset({"semantic"}), where=parse_where({"lang": "fr"}), now=now)
    got = tier.search("a", q, 10, flt)
    # semantic: 0..5; fr: even; not expired (1), not superseded (2) -> 0, 4
    assert sorted(got.column("id").to_pylist()) == ["a-0-0", "a-0-4"]
    assert got.column("id")[0].as_py() == "a-0-0"
    everything = Filter(include_superseded=True)
    assert tier.search("a", q, 100, everything).num_rows == n


def _top_id(tier: HotTier, q: np.ndarray) -> str | None:
    got = tier.search("a", q, 1, Filter()).column("id").to_pylist()
    return got[0] if got else None


def _eventually(check: Callable[[], bool], within: float = 2.0) -> bool:
    """True once `check()` holds, polling until `within` seconds have passed."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


@pytest.mark.parametrize("cache", ["validate", "tracking"])
def test_search_cache_sees_other_instances_writes(
    client: redis.Redis, keys: Keys, tier: HotTier, redis_url: str, cache: CacheMode
) -> None:
    """`validate` sees another process's write at once; `tracking` once Redis's push lands."""
    other = HotTier(redis.Redis.from_url(redis_url), keys, DIM, redis_url, cache=cache)
    seen: Callable[[Callable[[], bool]], bool] = (
        (lambda check: check()) if cache == "validate" else _eventually
    )
    t = make_table("a", 10)
    tier.put(t)
    q = sch.vectors(t)[3]
    assert seen(lambda: _top_id(other, q) == "a-0-3")
    tier.delete(["a-0-3"])
    assert seen(lambda: _top_id(other, q) != "a-0-3")
    tier.put(make_table("a", 1, id=["fresh"], embedding=q.reshape(1, -1)))
    assert seen(lambda: _top_id(other, q) == "fresh")
    tier.forget("a")
    assert seen(lambda: _top_id(other, q) is None)
    other.close()


def _tracking_tier(writer: HotTier, keys: Keys, redis_url: str) -> tuple[HotTier, np.ndarray]:
    """A second tracking HotTier on `writer`'s keys, after one search of namespace "a"."""
    other = HotTier(redis.Redis.from_url(redis_url), keys, DIM, redis_url, cache="tracking")
    t = make_table("a", 10)
    writer.put(t)
    q = sch.vectors(t)[3]
    assert _top_id(other, q) == "a-0-3"
    return other, q


def test_tracking_makes_no_round_trip_while_nothing_changes(
    keys: Keys, tier: HotTier, redis_url: str
) -> None:
    """Repeated searches of an unchanged namespace read no version from Redis."""
    other, q = _tracking_tier(tier, keys, redis_url)
    tracker = other._search._tracker
    assert tracker is not None and tracker.reads == 1
    for _ in range(50):
        assert _top_id(other, q) == "a-0-3"
    assert tracker.reads == 1 and tracker.healthy
    other.put(make_table("a", 1, id=["own"], embedding=q.reshape(1, -1)))
    assert _top_id(other, q) == "own"  # its own writes: seen at once
    other.close()


def test_tracking_falls_back_to_validating_when_its_listener_dies(
    client: redis.Redis, keys: Keys, tier: HotTier, redis_url: str
) -> None:
    other, q = _tracking_tier(tier, keys, redis_url)
    tracker = other._search._tracker
    assert tracker is not None
    client.client_kill_filter(_id=tracker.listener_id)
    assert _eventually(lambda: not tracker.healthy)
    tier.put(make_table("a", 1, id=["fresh"], embedding=q.reshape(1, -1)))
    assert _top_id(other, q) == "fresh"  # validated by GET, at once
    assert other._search._tracker is None
    other.close()


def test_scan_batches_all_or_one_namespace(tier: HotTier, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tiermem.tiers.hot_redis.BATCH", 7)
    a, b = make_table("a", 20, seed=1), make_table("b", 5, seed=2)
    tier.put(pa.concat_tables([a, b]))
    batches = list(tier.scan())
    assert max(x.num_rows for x in batches) <= 7
    assert sorted(pa.concat_tables(batches).column("id").to_pylist()) == sorted(
        a.column("id").to_pylist() + b.column("id").to_pylist()
    )
    only_b = pa.concat_tables(list(tier.scan("b")))
    assert by_id(only_b) == by_id(b)
    assert tier.delete(a.column("id").to_pylist()) == 20  # multi-batch delete


def test_stats_estimates_bytes(tier: HotTier) -> None:
    assert tier.stats().count == 0
    tier.put(make_table("a", 50))
    s = tier.stats()
    assert s.count == 50 and s.namespaces == 1
    assert 50 * DIM * 4 < s.bytes < 50 * 2000


def test_records_are_plain_hashes(tier: HotTier, keys: Keys, client: redis.Redis) -> None:
    t = make_table("a", 1, source_ids=[["x"]])
    tier.put(t)
    h = client.hgetall(keys.record("a", "a-0-0"))
    assert h[b"pinned"] == b"1" and json.loads(h[b"source_ids"]) == ["x"]
    assert int(h[b"created_at"]) == to_us(T0)
    assert np.array_equal(np.frombuffer(h[b"embedding"], "<f4"), sch.vectors(t)[0])
    assert b"expires_at" not in h and b"name" not in h
    assert client.hget(keys.directory(), "a-0-0") == b"a"


@pytest.mark.parametrize(
    ("conn", "url"),
    [
        (lambda: redis.Redis(port=1, retry=NO_RETRY), "redis://127.0.0.1:1/0"),
        (
            lambda: redis.Redis(unix_socket_path="/nonexistent/x.sock", retry=NO_RETRY),
            "unix:///nonexistent/x.sock",
        ),
    ],
)
def test_unreachable_redis_raises_tier_unavailable(conn: Any, url: str) -> None:
    tier = HotTier(conn(), Keys("tmtest:down"), DIM, url)
    for call in (
        lambda: tier.put(make_table("a", 1)),
        lambda: tier.get(["x"]),
        lambda: tier.search("a", np.ones(DIM, np.float32), 1, Filter()),
        lambda: list(tier.scan()),
        lambda: tier.stats(),
    ):
        with pytest.raises(TierUnavailable, match=f"L1 Redis at {url} is unreachable"):
            call()


def test_add_new_stores_what_put_does_and_locate(
    tier: HotTier, keys: Keys, client: redis.Redis
) -> None:
    """add_new stores the same records and indexes as put(); locate reads the directory."""
    a = make_table("a", 5, seed=1, kind=["episodic", "semantic"] * 2 + ["episodic"])
    b = make_table("b", 3, seed=2)
    tier.add_new(pa.concat_tables([a, b]))
    ids = [*a.column("id").to_pylist(), *b.column("id").to_pylist()]
    assert by_id(tier.get(ids)) == by_id(pa.concat_tables([a, b]))
    assert tier.count("a", "episodic") == 3 and tier.count("a", "semantic") == 2
    assert client.zcard(keys.recency("a")) == 5 and client.zcard(keys.frequency("b")) == 3
    assert tier.locate([*ids, "nope"]) == {
        **dict.fromkeys(a.column("id").to_pylist(), "a"),
        **dict.fromkeys(b.column("id").to_pylist(), "b"),
    }


def test_add_new_returns_counts_after_the_write(
    tier: HotTier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """add_new's counts are each written (namespace, kind)'s ZCARD after the write,
    across batches (a later batch's count wins) and on top of rows already there."""
    monkeypatch.setattr("tiermem.tiers.hot_redis.BATCH", 4)
    tier.put(make_table("a", 2, seed=9))  # two episodes already in `a`
    a = make_table("a", 7, seed=1, kind=["episodic", "semantic"] * 3 + ["episodic"])
    b = make_table("b", 3, seed=2)
    counts = tier.add_new(pa.concat_tables([a, b]))
    assert counts == {("a", "episodic"): 6, ("a", "semantic"): 3, ("b", "episodic"): 3}
    assert counts == {(ns, k): tier.count(ns, k) for ns, k in counts}
    assert tier.add_new(make_table("c", 0)) == {}


def test_light_fields_match_the_full_rows(tier: HotTier, monkeypatch: pytest.MonkeyPatch) -> None:
    """`light` (the demote snapshot's read: no text, no vectors) agrees with `scan`."""
    from tiermem.lifecycle import snapshot

    monkeypatch.setattr("tiermem.tiers.hot_redis.BATCH", 4)  # several round trips
    t = make_table(
        "a",
        9,
        expires_at=[None, T0 + timedelta(days=1), *[None] * 7],
        superseded_by=[None, "x-1", *[None] * 7],
        pinned=[True, *[False] * 8],
        metadata=[sch.dump_metadata({"k": "v ✓"}), *["{}"] * 8],
    )
    tier.put(t)
    tier.touch([t.column("id")[2].as_py()] * 2, T0 + timedelta(hours=1))
    cols, sizes, hits = tier.light("a")
    full = pa.concat_tables(list(tier.scan("a")))
    want_cols, want_sizes = snapshot._columns(full)
    assert by_id_cols(cols, sizes) == by_id_cols(want_cols, want_sizes)
    assert set(hits) == {t.column("id")[2].as_py()} and len(hits[t.column("id")[2].as_py()]) == 2
    assert tier.light("nobody") == ({n: [] for n in cols}, [], {})


def by_id_cols(cols: dict[str, list[Any]], sizes: list[int]) -> dict[str, tuple[Any, ...]]:
    names = sorted(cols)
    return {cols["id"][i]: (*(cols[n][i] for n in names), sizes[i]) for i in range(len(cols["id"]))}


def test_named_finds_ids_of_a_kind_and_name(tier: HotTier) -> None:
    t = make_table(
        "p",
        5,
        kind=["procedural", "procedural", "semantic", "procedural", "episodic"],
        name=["deploy", "deploy", "deploy", "build", None],
    )
    tier.put(t)
    ids = t.column("id").to_pylist()
    assert sorted(tier.named("p", "procedural", "deploy")) == sorted(ids[:2])
    assert tier.named("p", "procedural", "build") == [ids[3]]
    assert (
        tier.named("p", "procedural", "nothing") == []
        and tier.named("q", "procedural", "deploy") == []
    )
    tier.delete([ids[0]])
    assert tier.named("p", "procedural", "deploy") == [ids[1]]
