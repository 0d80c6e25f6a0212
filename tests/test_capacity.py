"""Promotions are held to the destination's capacity, as adds are: a user's
`promote`, the promote job and read-through promotion into a full group
refuse (``on_full: reject``), trim the excess at once (``evict``: never the
memory a user just promoted) or log it (``warn``). Consolidation's new
memories trim or warn too, and go colder where a ``reject`` group is full:
to L2, or to L3 (no capacity) when L2 is full too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tiermem
from tests.conftest import OpenStore
from tests.test_consolidate import seed_store
from tests.test_engine import FakeClock
from tiermem.lifecycle import capacity
from tiermem.lifecycle.policy import Policy

POLICY = """
version: 1
kinds:
  episodic:
    l1: {capacity: 4, evict: [lru], on_full: %s}
    promote: {hits: 2, window: 1h%s}
  semantic:
    l1: {capacity: 2, on_full: reject}
    promote: {hits: 2, window: 1h%s}
"""

Open = Callable[..., tiermem.Engine]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(open_store: OpenStore, tmp_path: Path, clock: FakeClock) -> Open:
    """An engine whose episodic L1 does `on_full`; `on_read` read-through on both kinds."""

    def open_(on_full: str = "evict", on_read: int | None = None) -> tiermem.Engine:
        extra = "" if on_read is None else f", on_read: {on_read}"
        path = tmp_path / f"policy-{on_full}-{on_read}.yaml"
        path.write_text(POLICY % (on_full, extra, extra))
        return open_store(policy=str(path), clock=clock)

    return open_


def tiers(mem: tiermem.Engine) -> dict[str, str]:
    return {m.id: m.tier for m in mem.scan()}


def in_l1(mem: tiermem.Engine, kind: str) -> int:
    return sum(1 for _ in mem.scan(namespace="a", kinds=[kind], tiers=["l1"]))


def warm(mem: tiermem.Engine, text: str, kind: str = "episodic") -> str:
    """A memory added and demoted to L2."""
    m = mem.add(text, namespace="a", kind=kind)
    mem.demote(m.id, to="l2")
    return m.id


def test_user_promote_into_a_full_reject_group_raises_and_moves_nothing(
    engine: Open,
) -> None:
    mem = engine()
    fact = warm(mem, "the sky is blue", "semantic")
    held = [mem.add(f"fact {i}", namespace="a", kind="semantic").id for i in range(2)]
    events = len(list(mem.events.read()))
    with pytest.raises(tiermem.CapacityError, match=r"a/semantic in l1 is full \(2/2\)"):
        mem.promote(fact, to="l1")
    assert tiers(mem)[fact] == "l2"
    assert len(list(mem.events.read())) == events  # no move, so nothing logged
    mem.delete(held[0])
    assert mem.promote(fact, to="l1").tier == "l1"


def test_user_promote_into_a_full_evict_group_keeps_what_was_promoted(
    engine: Open, clock: FakeClock
) -> None:
    mem = engine()
    old = warm(mem, "least recently used of all")
    clock.advance(minutes=1)
    residents = [mem.add(f"resident {i}", namespace="a").id for i in range(4)]
    mem.promote(old, to="l1")  # lru alone would pick it: its last access is the oldest
    where = tiers(mem)
    assert where[old] == "l1"
    assert in_l1(mem, "episodic") == 3  # evicted down to 0.9 x capacity
    assert [where[r] for r in residents] == ["l2", "l2", "l1", "l1"]  # the two lru
    jobs = [(e["job"], e["id"]) for e in mem.events.read() if e["id"] in [old, *residents]]
    assert jobs[-3:] == [("user", old), ("evict", residents[0]), ("evict", residents[1])]


def test_promote_job_fills_a_reject_group_to_capacity_and_says_what_it_held_back(
    engine: Open, clock: FakeClock
) -> None:
    mem = engine()
    facts = [warm(mem, f"fact {i}", "semantic") for i in range(3)]
    mem.add("resident fact", namespace="a", kind="semantic")
    for _ in range(2):
        clock.advance(minutes=1)
        mem.get_many(facts)
    clock.advance(minutes=1)
    mem.get(facts[1])  # the most hit: promoted first
    plan = mem.plan("promote")
    held = "a/semantic in l1 is full (on_full: reject): 2 promotion(s) held back"
    assert [a.id for a in plan.actions] == facts[1:2] and plan.notes == [held]
    report = mem.run("promote")
    assert report.moved == 1 and report.notes == [held]
    assert [tiers(mem)[f] for f in facts] == ["l2", "l1", "l2"]
    assert in_l1(mem, "semantic") == 2


def test_promote_job_evicts_the_excess_of_an_evict_group(engine: Open, clock: FakeClock) -> None:
    mem = engine()
    popular = [warm(mem, f"popular {i}") for i in range(2)]
    residents = [mem.add(f"resident {i}", namespace="a").id for i in range(4)]
    for _ in range(2):
        clock.advance(minutes=1)
        mem.get_many(popular)
    assert mem.run("promote").moved == 2
    where = tiers(mem)
    assert [where[p] for p in popular] == ["l1", "l1"]
    assert in_l1(mem, "episodic") == 3  # 6 > 4: down to 0.9 x capacity
    assert [where[r] for r in residents] == ["l2", "l2", "l2", "l1"]
    assert len(where) == 6  # nothing lost
    assert {e["job"] for e in mem.events.read()} >= {"promote", "evict"}


def test_promote_job_into_a_warn_group_logs_and_keeps_everything(
    engine: Open, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    mem = engine("warn")
    popular = warm(mem, "popular")
    for i in range(4):
        mem.add(f"resident {i}", namespace="a")
    for _ in range(2):
        clock.advance(minutes=1)
        mem.get(popular)
    with caplog.at_level("WARNING", logger="tiermem.capacity"):
        assert mem.run("promote").moved == 1
    assert [r.getMessage() for r in caplog.records] == ["a/episodic in l1 over capacity: 5/4"]
    assert in_l1(mem, "episodic") == 5


def test_read_through_into_a_full_reject_group_leaves_the_memory_in_l2(
    engine: Open, clock: FakeClock
) -> None:
    mem = engine(on_read=2)
    fact = warm(mem, "the sky is blue", "semantic")
    held = [mem.add(f"fact {i}", namespace="a", kind="semantic").id for i in range(2)]
    for _ in range(2):
        clock.advance(minutes=1)
        assert mem.get(fact).text == "the sky is blue"  # the read itself is served
    assert tiers(mem)[fact] == "l2"
    assert not [e for e in mem.events.read() if e["job"] == "promote-on-read"]
    mem.delete(held[0])
    clock.advance(minutes=1)
    mem.get(fact)
    assert tiers(mem)[fact] == "l1"  # room again: the next due read promotes it


CONSOLIDATING = """
version: 1
kinds:
  episodic:
    consolidate: {every: 6h, similarity: 0.85, min_cluster: 3, min_age: 1h, into: semantic}
  semantic:
    l1: {capacity: 2, evict: [lru], on_full: %s}
"""


def consolidating(open_store: OpenStore, tmp_path: Path, on_full: str) -> tiermem.Engine:
    path = tmp_path / f"consolidating-{on_full}.yaml"
    path.write_text(CONSOLIDATING % on_full)
    return open_store(policy=str(path))


def test_consolidation_trims_the_group_its_new_memories_overfill(
    open_store: OpenStore, tmp_path: Path
) -> None:
    mem = consolidating(open_store, tmp_path, "evict")
    fact = mem.add("an older fact", namespace="c", kind="semantic").id
    mem.add("another fact", namespace="c", kind="semantic")
    seed_store(mem)  # two clusters: two new semantic memories
    report = mem.run("consolidate")
    assert report.merged == 7
    facts = {m.id: m.tier for m in mem.scan(namespace="c", kinds=["semantic"])}
    assert len(facts) == 4  # nothing lost
    assert sum(t == "l1" for t in facts.values()) == 1  # 4 > 2: down to 0.9 x capacity
    assert facts[fact] == "l2"
    assert "evict" in {e["job"] for e in mem.events.read()}


def test_consolidation_places_new_memories_colder_when_a_reject_group_is_full(
    open_store: OpenStore, tmp_path: Path
) -> None:
    mem = consolidating(open_store, tmp_path, "reject")
    mem.add("an older fact", namespace="c", kind="semantic")
    seed_store(mem)  # two clusters: room in L1 for one of their memories
    report = mem.run("consolidate")
    assert report.merged == 7 and not report.errors
    assert "c/semantic in l1 is full (on_full: reject): 1 new memory placed in l2" in report.notes
    made = [m for m in mem.scan(namespace="c", kinds=["semantic"]) if m.source_ids]
    assert sorted(m.tier for m in made) == ["l1", "l2"]
    assert sum(1 for _ in mem.scan(namespace="c", kinds=["semantic"], tiers=["l1"])) == 2
    assert mem.plan("consolidate").actions == []  # done: a re-run finds both memories


# Two groups: a reject L1 (capacity 3) over a reject L2 (capacity 2); an evict group.
ROOMY = Policy.model_validate(
    {
        "version": 1,
        "kinds": {
            "semantic": {
                "l1": {"capacity": 3, "on_full": "reject"},
                "l2": {"capacity": 2, "on_full": "reject"},
            },
            "episodic": {"l1": {"capacity": 1, "on_full": "evict"}},
        },
    }
)
GROUPS = [("l1", "a", "semantic"), ("l1", "b", "semantic"), ("l1", "a", "episodic")]


@given(
    dests=st.lists(st.sampled_from(GROUPS), max_size=12),
    have=st.dictionaries(st.sampled_from(GROUPS), st.integers(0, 5)),
)
def test_fit_lets_in_the_first_moves_a_reject_group_has_room_for(
    dests: list[capacity.Group], have: dict[capacity.Group, int]
) -> None:
    fits, notes = capacity.fit(dests, ROOMY, lambda *g: have.get(g, 0))
    for group in GROUPS:
        mine = [ok for d, ok in zip(dests, fits, strict=True) if d == group]
        room = len(mine) if group[2] == "episodic" else max(0, 3 - have.get(group, 0))
        assert mine == [True] * min(room, len(mine)) + [False] * max(0, len(mine) - room)
    assert len(notes) == len({d for d, ok in zip(dests, fits, strict=True) if not ok})


@given(n=st.integers(0, 8), l1=st.integers(0, 4), l2=st.integers(0, 3))
def test_room_places_new_memories_in_the_first_tier_with_room(n: int, l1: int, l2: int) -> None:
    have = {("l1", "a", "semantic"): l1, ("l2", "a", "semantic"): l2}
    room = capacity.Room(ROOMY, lambda *g: have.get(g, 0))
    in_l1, in_l2 = max(0, 3 - l1), max(0, 2 - l2)
    want = ["l1"] * min(n, in_l1) + ["l2"] * min(max(0, n - in_l1), in_l2)
    want += ["l3"] * (n - len(want))  # L3 has no capacity
    placed = [room.place("l1", "a", "semantic") for _ in want]
    assert placed == want
    assert sum(room.placed_colder.values()) == len(want) - placed.count("l1")


def test_consolidation_with_no_room_in_l1_or_l2_places_new_memories_in_l3(
    open_store: OpenStore, tmp_path: Path
) -> None:
    path = tmp_path / "full.yaml"
    path.write_text(CONSOLIDATING % "reject" + "    l2: {capacity: 1, on_full: reject}\n")
    mem = open_store(policy=str(path))
    mem.demote(mem.add("fact 0", namespace="c", kind="semantic").id, to="l2")  # L2 full
    for i in (1, 2):
        mem.add(f"fact {i}", namespace="c", kind="semantic")  # L1 full
    ids = seed_store(mem)
    report = mem.run("consolidate")
    assert report.merged == 7 and not report.errors
    assert "c/semantic in l1 is full (on_full: reject): 2 new memories placed in l3" in (
        report.notes
    )
    made = [m for m in mem.scan(namespace="c", kinds=["semantic"]) if m.source_ids]
    assert [m.tier for m in made] == ["l3", "l3"]
    assert {i for m in made for i in m.source_ids} == set(ids["a"] + ids["b"])
    assert mem.plan("consolidate").actions == []  # done: a re-run finds them in L3
