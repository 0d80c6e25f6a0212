"""The Engine façade end to end, on real Redis, files and DuckDB."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import tiermem
from tests.conftest import DIM, OpenStore


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def test_add_get_round_trip(store: tiermem.Engine) -> None:
    m = store.add(
        "Alice drinks green tea",
        namespace="user:alice",
        kind="semantic",
        metadata={"src": "chat", "tags": ["a", "b"], "n": 3, "ok": True, "none": None},
        importance=0.9,
        pinned=True,
        name="tea",
    )
    got = store.get(m.id)
    assert got.tier == "l1" and got.text == m.text and got.kind == "semantic"
    assert got.metadata == m.metadata and got.importance == 0.9 and got.pinned
    assert got.name == "tea" and got.version == 1
    assert np.allclose(got.embedding, m.embedding) and abs(np.linalg.norm(got.embedding) - 1) < 1e-5
    assert got.access_count == 1  # a get is an access
    assert m.last_accessed_at == m.created_at


def test_clock_injection_and_access_stats(open_store: OpenStore) -> None:
    clock = FakeClock()
    mem = open_store(clock=clock)
    m = mem.add("x", namespace="a")
    assert m.created_at == clock.now
    clock.advance(hours=2)
    got = mem.get(m.id)
    assert got.last_accessed_at == clock.now and got.access_count == 1
    clock.advance(hours=1)
    mem.search("x", namespace="a")
    assert mem.get(m.id).access_count == 3


def test_update_versions_and_reembeds(store: tiermem.Engine) -> None:
    m = store.add("old text", namespace="a", metadata={"k": 1})
    new = store.update(m.id, text="completely different words", metadata={"k": 2})
    assert new.version == 2 and new.text == "completely different words"
    got = store.get(m.id)
    assert got.version == 2 and got.metadata == {"k": 2}
    assert not np.allclose(got.embedding, m.embedding)
    pinned = store.pin(m.id)
    assert pinned.pinned and pinned.version == 2  # pinning is not a content edit


@pytest.mark.parametrize("tier", ["l1", "l2", "l3"])
def test_update_and_delete_in_every_tier(store: tiermem.Engine, tier: str) -> None:
    m = store.add("in some tier", namespace="a", embedding=unit(1))
    if tier != "l1":
        store.demote(m.id, to=tier)
    # scan, not get: a get from L2 reads it back into L1 (the default's promote.on_read)
    assert {x.id: x.tier for x in store.scan()}[m.id] == tier
    store.update(m.id, importance=0.1)
    got = store.get(m.id)
    assert got.tier == tier and got.importance == 0.1 and got.version == 2
    assert store.delete(m.id) is True
    assert store.get_many([m.id]) == {}
    assert store.delete(m.id) is False


def test_moves_between_every_pair(store: tiermem.Engine) -> None:
    m = store.add("moving", namespace="a")
    for dst in ("l2", "l3"):
        assert store.demote(m.id, to=dst).tier == dst
    assert store.promote(m.id, to="l2").tier == "l2"
    assert store.promote(m.id, to="l1").tier == "l1"
    assert store.demote(m.id, to="l3").tier == "l3"
    assert store.promote(m.id).tier == "l1"
    assert store.demote(m.id, to="l1").tier == "l1"  # same tier: no-op
    assert [x.id for x in store.scan()] == [m.id]  # exactly one copy
    assert store.get(m.id).text == "moving"


def test_search_ranks_filters_and_isolates(store: tiermem.Engine) -> None:
    now = datetime.now(UTC)
    a = store.add("alpha", namespace="ns1", embedding=unit(1), metadata={"lang": "en", "n": 5})
    b = store.add(
        "beta", namespace="ns1", embedding=unit(2), metadata={"lang": "fr", "n": 9}, kind="semantic"
    )
    store.add("other tenant", namespace="ns2", embedding=unit(1))
    store.demote(b.id, to="l2")
    hits = store.search(unit(1), namespace="ns1", k=5)
    assert [h.memory.id for h in hits] == [a.id, b.id]
    assert hits[0].score == pytest.approx(1.0, abs=1e-3) and hits[1].tier == "l2"
    assert all(h.memory.namespace == "ns1" for h in hits)
    assert [h.memory.id for h in store.search(unit(1), namespace="ns1", kinds=["semantic"])] == [
        b.id
    ]
    assert [h.memory.id for h in store.search(unit(1), namespace="ns1", where={"lang": "fr"})] == [
        b.id
    ]
    assert [
        h.memory.id for h in store.search(unit(1), namespace="ns1", where={"n": {"$gt": 6}})
    ] == [b.id]
    got = store.search(unit(1), namespace="ns1", where={"lang": {"$in": ["en", "de"]}})
    assert [h.memory.id for h in got] == [a.id]
    assert store.search(unit(1), namespace="ns1", since=now + timedelta(days=1)) == []
    assert len(store.search(unit(1), namespace="ns1", until=now + timedelta(days=1))) == 2


def test_search_reads_cold_when_deep_or_not_enough(store: tiermem.Engine) -> None:
    m = store.add("cold one", namespace="ns", embedding=unit(3))
    store.demote(m.id, to="l3")
    hits = store.search(unit(3), namespace="ns", k=1, deep=True)
    assert hits[0].memory.id == m.id and hits[0].tier == "l3"
    # hot+warm hold nothing: L3 is read even without deep
    assert store.search(unit(3), namespace="ns", k=1)[0].tier == "l3"


def test_a_search_records_its_l1_accesses_before_it_returns(
    store: tiermem.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """L1's access update runs in Redis while the hits are built, and is finished
    (or its error raised) before the search returns, even when building the hits fails."""
    hot = store.add("hot one", namespace="ns", embedding=unit(4))
    count = {m.id: m.access_count for m in store.scan(namespace="ns")}[hot.id]
    [hit] = store.search(unit(4), namespace="ns", k=1)
    assert hit.tier == "l1" and hit.memory.access_count == count + 1
    assert {m.id: m.access_count for m in store.scan(namespace="ns")}[hot.id] == count + 1

    def broken(*args: object, **kwargs: object) -> list[tiermem.Hit]:
        raise RuntimeError("hits failed")

    monkeypatch.setattr(tiermem.retrieval, "hits", broken)
    with pytest.raises(RuntimeError, match="hits failed"):
        store.search(unit(4), namespace="ns", k=1)
    assert {m.id: m.access_count for m in store.scan(namespace="ns")}[hot.id] == count + 2
    pool = store.backends.l1.client.connection_pool
    assert not pool._in_use_connections  # type: ignore[attr-defined]


def test_expired_memories_are_never_returned(open_store: OpenStore) -> None:
    clock = FakeClock()
    mem = open_store(clock=clock)
    m = mem.add("short lived", namespace="a", ttl=60, embedding=unit(1))
    keep = mem.add("long lived", namespace="a", embedding=unit(2))
    assert {h.memory.id for h in mem.search(unit(1), namespace="a")} == {m.id, keep.id}
    clock.advance(seconds=61)
    assert {h.memory.id for h in mem.search(unit(1), namespace="a", deep=True)} == {keep.id}
    assert mem.get_many([m.id]) == {}
    with pytest.raises(tiermem.NotFound):
        mem.get(m.id)


def test_supersedes_moves_old_fact_cold(store: tiermem.Engine) -> None:
    old = store.add("Alice lives in Paris", namespace="a", kind="semantic", embedding=unit(1))
    new = store.add(
        "Alice lives in Lisbon",
        namespace="a",
        kind="semantic",
        embedding=unit(1),
        supersedes=old.id,
    )
    got = store.get(old.id)
    assert got.superseded_by == new.id and got.tier == "l3"
    assert [h.memory.id for h in store.search(unit(1), namespace="a", deep=True)] == [new.id]
    with_old = store.search(unit(1), namespace="a", deep=True, include_superseded=True)
    assert {h.memory.id for h in with_old} == {old.id, new.id}
    with pytest.raises(tiermem.ValidationError, match="supersedes"):
        store.add("x", namespace="b", supersedes=new.id)


def test_blended_score_prefers_important(store: tiermem.Engine) -> None:
    v = unit(1)
    low = store.add("low", namespace="a", embedding=v, importance=0.0)
    high = store.add("high", namespace="a", embedding=v, importance=1.0)
    hits = store.search(v, namespace="a", score="blended")
    assert [h.memory.id for h in hits] == [high.id, low.id]


def test_forget_erases_one_namespace_everywhere(store: tiermem.Engine) -> None:
    ids = [store.add(f"m{i}", namespace="gone").id for i in range(6)]
    store.demote(ids[0], to="l2")
    store.demote(ids[1], to="l3")
    keep = store.add("stays", namespace="kept")
    assert store.forget(namespace="gone") == 6
    assert [m.id for m in store.scan()] == [keep.id]
    assert store.search("m1", namespace="gone", deep=True) == []


def test_delete_many_and_get_many(store: tiermem.Engine) -> None:
    res = store.add_many([{"text": f"t{i}"} for i in range(5)], namespace="a")
    ids = [i for i in res.ids if i]
    store.demote(ids[0], to="l3")
    assert set(store.get_many([*ids[:3], "missing"])) == set(ids[:3])
    assert store.delete_many([*ids[:3], "missing"]) == 3
    assert {m.id for m in store.scan()} == set(ids[3:])


def test_scan_filters(store: tiermem.Engine) -> None:
    a = store.add("a", namespace="n1", kind="semantic")
    b = store.add("b", namespace="n2")
    store.demote(b.id, to="l2")
    assert [m.id for m in store.scan(namespace="n1")] == [a.id]
    assert [m.id for m in store.scan(kinds=["episodic"])] == [b.id]
    assert [m.id for m in store.scan(tiers=["l2"])] == [b.id]


def test_stats_and_sql(store: tiermem.Engine) -> None:
    ms = [
        store.add(f"m{i}", namespace="a", kind="semantic" if i % 2 else "episodic")
        for i in range(4)
    ]
    store.demote(ms[0].id, to="l2")
    store.demote(ms[1].id, to="l3")
    s = store.stats()
    assert (s.l1.count, s.l2.count, s.l3.count) == (2, 1, 1)
    assert s.kinds == {"episodic": 2, "semantic": 2, "procedural": 0}
    t = store.sql("SELECT tier, count(*) AS n FROM memories GROUP BY tier ORDER BY tier")
    assert t.to_pylist() == [{"tier": "l1", "n": 2}, {"tier": "l2", "n": 1}, {"tier": "l3", "n": 1}]
    t = store.sql("SELECT id, array_length(embedding) AS d FROM cold")
    assert t.to_pylist() == [{"id": ms[1].id, "d": DIM}]
    assert store.sql("SELECT count(*) AS n FROM memories", namespace="zzz").to_pylist() == [
        {"n": 0}
    ]


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM memories",
        "SELECT 1; SELECT 2",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "ATTACH '/tmp/x.db' AS x",
        "SET threads = 1",
        "INSTALL httpfs",
        "SELECT * FROM read_csv('/etc/passwd')",
        "CREATE TABLE t AS SELECT 1",
        "not sql at all",
    ],
)
def test_sql_refuses_anything_but_one_safe_select(store: tiermem.Engine, query: str) -> None:
    store.add("x", namespace="a")
    with pytest.raises(tiermem.QueryError):
        store.sql(query)
    assert store.sql("SELECT count(*) AS n FROM memories").to_pylist() == [{"n": 1}]


def test_reopen_keeps_everything(open_store: OpenStore, tmp_path: Path) -> None:
    mem = open_store()
    ids = [mem.add(f"memory {i}", namespace="a").id for i in range(6)]
    mem.demote(ids[0], to="l2")
    mem.demote(ids[1], to="l3")
    mem.close()
    mem = open_store()
    assert {m.id: m.tier for m in mem.scan()} == {
        ids[0]: "l2",
        ids[1]: "l3",
        **{i: "l1" for i in ids[2:]},
    }


def test_writer_lock_and_read_only(open_store: OpenStore) -> None:
    mem = open_store()
    m = mem.add("x", namespace="a")
    with pytest.raises(tiermem.LockedError):
        open_store()
    reader = open_store(read_only=True)
    assert reader.get(m.id).text == "x"
    with pytest.raises(tiermem.TierMemError, match="read-only"):
        reader.add("y", namespace="a")


def test_format_mismatch_is_a_config_error(open_store: OpenStore) -> None:
    open_store().close()
    with pytest.raises(tiermem.ConfigError, match="dim"):
        open_store(overrides={"embedding.dim": 16}, embedder=tiermem.HashingEmbedder(16))


def test_redis_down_is_tier_unavailable(tmp_path: Path) -> None:
    with pytest.raises(tiermem.TierUnavailable, match=r"127\.0\.0\.1:1"):
        tiermem.open(tmp_path, **{"l1.url": "redis://127.0.0.1:1/0", "embedding.dim": DIM})
    # the failed open released the writer lock
    with pytest.raises(tiermem.TierUnavailable):
        tiermem.open(tmp_path, **{"l1.url": "redis://127.0.0.1:1/0", "embedding.dim": DIM})


def test_unknown_policy_is_a_policy_error(open_store: OpenStore) -> None:
    with pytest.raises(tiermem.PolicyError, match="default"):
        open_store(policy="no-such-policy")


def test_embedded_redis_default(tmp_path: Path) -> None:
    """No l1.url: an embedded Redis runs for the data dir and is gone after close."""
    with tiermem.open(
        tmp_path, embedder=tiermem.HashingEmbedder(DIM), **{"embedding.dim": DIM}
    ) as mem:
        m = mem.add("embedded", namespace="a")
        pid = int((tmp_path / "redis" / "redis.pid").read_text())
        assert _alive(pid)
    assert not _alive(pid)
    with tiermem.open(
        tmp_path, embedder=tiermem.HashingEmbedder(DIM), **{"embedding.dim": DIM}
    ) as mem:
        assert mem.get(m.id).text == "embedded"  # AOF kept L1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_public_surface() -> None:
    for name in [
        "open",
        "Engine",
        "Memory",
        "Hit",
        "BatchResult",
        "Stats",
        "TierMemError",
        "ValidationError",
        "NotFound",
        "LockedError",
        "QueryError",
        "ConfigError",
        "PolicyError",
        "CapacityError",
        "TierUnavailable",
    ]:
        assert name in tiermem.__all__ and hasattr(tiermem, name)
    for err in [
        "ValidationError",
        "NotFound",
        "LockedError",
        "QueryError",
        "ConfigError",
        "PolicyError",
        "CapacityError",
        "TierUnavailable",
    ]:
        assert issubclass(getattr(tiermem, err), tiermem.TierMemError)


def test_shipped_files_work_after_install(tmp_path: Path) -> None:
    """Run outside the checkout, so the installed package (not the repo) is imported."""
    code = (
        "import tiermem, tiermem.resources as r, tiermem.lifecycle.policy as p; "
        "print(tiermem.__file__); print(sorted(r.shipped_policies())); "
        "[p.load_policy(n) for n in r.shipped_policies()]"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    if "No module named 'tiermem'" in out.stderr:
        pytest.skip("tiermem is not installed (pip install .)")
    assert out.returncode == 0, out.stderr
    assert "site-packages" in out.stdout.splitlines()[0]
    assert "'chat-assistant', 'coding-agent', 'default'" in out.stdout
