"""Lifecycle jobs on a real engine: plan is a dry run, run does what plan said,
capacity on write, events, and a scheduler that moves memories by itself."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tiermem
from tests.conftest import OpenStore
from tests.test_engine import FakeClock
from tiermem.ids import to_us
from tiermem.lifecycle import planners, snapshot

POLICY = """
version: 1
kinds:
  episodic:
    l1: {capacity: 10, evict: [lru], idle: 1h, on_full: evict}
    l2: {idle: 1d}
    l3: {retain: 30d}
    promote: {hits: 3, window: 1h}
  semantic:
    l1: {capacity: 2, on_full: reject}
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "test-policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mem(open_store: OpenStore, policy_file: Path, clock: FakeClock) -> tiermem.Engine:
    return open_store(policy=str(policy_file), clock=clock)


def tiers(mem: tiermem.Engine) -> dict[str, str]:
    return {m.id: m.tier for m in mem.scan()}


def test_plan_changes_nothing_and_run_does_what_plan_said(
    mem: tiermem.Engine, clock: FakeClock
) -> None:
    ids = [mem.add(f"memory {i}", namespace="a").id for i in range(5)]
    clock.advance(hours=2)
    mem.get(ids[0])  # accessed: stays hot
    before = tiers(mem)
    plan = mem.plan("demote")
    assert tiers(mem) == before
    assert {a.id for a in plan.actions} == set(ids[1:])
    assert all(a.src == "l1" and a.dst == "l2" and "idle 2h" in a.reason for a in plan.actions)
    report = mem.run("demote")
    assert report.moved == 4 and not report.errors and report.run
    assert tiers(mem) == {ids[0]: "l1", **{i: "l2" for i in ids[1:]}}
    events = list(mem.events.read())
    assert {e["id"]: e["reason"] for e in events} == {a.id: a.reason for a in plan.actions}
    assert {(e["run"], e["job"], e["action"], e["src"], e["dst"]) for e in events} == {
        (report.run, "demote", "move", "l1", "l2")
    }
    assert mem.plan("demote").actions == []  # idempotent: nothing left to do


def test_demote_l2_to_l3_and_retention(mem: tiermem.Engine, clock: FakeClock) -> None:
    m = mem.add("cooling down", namespace="a")
    clock.advance(hours=2)
    mem.run("demote")
    clock.advance(days=2)
    mem.run("demote")
    assert mem.get(m.id).tier == "l3"
    clock.advance(days=31)
    plan = mem.plan("expire")
    assert [(a.id, a.action) for a in plan.actions] == [(m.id, "delete")]
    assert "retain 30d" in plan.actions[0].reason
    assert mem.run("expire").deleted == 1
    assert mem.get_many([m.id]) == {}


def test_expire_deletes_expired_everywhere(mem: tiermem.Engine, clock: FakeClock) -> None:
    a = mem.add("short", namespace="a", ttl=60)
    b = mem.add("short too", namespace="a", ttl=60)
    keep = mem.add("long", namespace="a")
    mem.demote(b.id, to="l3")
    clock.advance(seconds=61)
    report = mem.run("expire")
    assert report.deleted == 2
    assert set(tiers(mem)) == {keep.id}
    assert a.id not in tiers(mem)


def test_promote_after_hits_in_window(mem: tiermem.Engine, clock: FakeClock) -> None:
    m = mem.add("popular", namespace="a")
    mem.demote(m.id, to="l3")
    for _ in range(2):
        mem.get(m.id)
    assert mem.plan("promote").actions == []
    mem.get(m.id)
    plan = mem.plan("promote")
    assert [(a.src, a.dst) for a in plan.actions] == [("l3", "l2")]
    mem.run("promote")
    assert tiers(mem)[m.id] == "l2"  # scan: not an access
    clock.advance(minutes=5)
    mem.get(m.id)
    mem.get(m.id)
    assert mem.plan("promote").actions == []  # the promotion spent the earlier hits
    mem.get(m.id)
    mem.run("promote")
    assert mem.get(m.id).tier == "l1"


READ_THROUGH = """
version: 1
kinds:
  episodic:
    l1: {capacity: 10, evict: [lru], idle: 1h, on_full: evict}
    promote: {hits: 3, window: 1h, on_read: 2}
"""


@pytest.fixture
def read_through(open_store: OpenStore, tmp_path: Path, clock: FakeClock) -> tiermem.Engine:
    path = tmp_path / "read-through.yaml"
    path.write_text(READ_THROUGH)
    return open_store(policy=str(path), clock=clock)


def test_promote_on_read_moves_at_the_read_that_reaches_hits(
    read_through: tiermem.Engine, clock: FakeClock
) -> None:
    mem = read_through
    m = mem.add("popular", namespace="a")
    mem.demote(m.id, to="l2")
    assert mem.get(m.id).tier == "l2"
    assert tiers(mem)[m.id] == "l2"  # one hit: not yet
    clock.advance(minutes=5)
    assert mem.get(m.id).tier == "l2"  # returned as read: where it was found ...
    assert tiers(mem)[m.id] == "l1"  # ... and moved into L1 by that read
    [ev] = [e for e in mem.events.read() if e["job"] == "promote-on-read"]
    assert (ev["id"], ev["src"], ev["dst"]) == (m.id, "l2", "l1")
    assert ev["reason"] == "2 hits within 1h (>= on_read 2)"
    mem.demote(m.id, to="l2")
    clock.advance(minutes=5)
    mem.get(m.id)
    assert tiers(mem)[m.id] == "l2"  # the promotion spent its hits: a new pair is needed
    clock.advance(minutes=5)
    hits = mem.search("popular", namespace="a")  # a search hit counts as an access ...
    assert [(h.memory.id, h.tier) for h in hits] == [(m.id, "l2")]
    assert tiers(mem)[m.id] == "l2"  # ... but moves nothing at the search
    assert [(a.src, a.dst) for a in mem.plan("promote").actions] == []  # 2 hits < 3
    clock.advance(minutes=5)
    mem.get(m.id)  # the third hit in the window; on_read (2) is met at this get
    assert tiers(mem)[m.id] == "l1"
    assert mem.plan("promote").actions == []  # nothing left for the job


def test_promote_on_read_is_the_writers_alone(
    read_through: tiermem.Engine, open_store: OpenStore, tmp_path: Path, clock: FakeClock
) -> None:
    """A read-only process reads L2 without moving anything (it records no L2 hits)."""
    m = read_through.add("shared", namespace="a")
    read_through.demote(m.id, to="l2")
    policy = str(tmp_path / "read-through.yaml")
    reader = open_store(read_through.path, read_only=True, policy=policy)
    for _ in range(3):
        clock.advance(minutes=1)
        assert reader.get(m.id).tier == "l2"
    assert tiers(read_through)[m.id] == "l2"
    assert not [e for e in read_through.events.read() if e["job"] == "promote-on-read"]


def test_promote_on_read_skips_what_moved_since_the_read(
    read_through: tiermem.Engine, clock: FakeClock
) -> None:
    """Read-through plans from what the get read; a job may move it before the
    promotion takes the engine lock: then there is nothing to promote or log."""
    mem = read_through
    m = mem.add("moving on", namespace="a")
    mem.demote(m.id, to="l2")
    read = mem.get(m.id)  # as this get saw it: in L2, one hit (on_read is 2)
    mem.demote(m.id, to="l3")  # then moved by someone else
    clock.advance(minutes=1)
    mem.hits.record([m.id], to_us(clock()))  # a second hit: the rule alone would promote
    due = snapshot.read_stats([read], mem.hits)
    assert [a.src for a in planners.plan_promote_on_read(due, mem.policy, clock())] == ["l2"]
    assert mem.lifecycle.promote_on_read(due, clock()) == 0
    assert tiers(mem)[m.id] == "l3"
    assert not [e for e in mem.events.read() if e["job"] == "promote-on-read"]


def test_promote_on_read_leaves_l3_to_the_job(
    read_through: tiermem.Engine, clock: FakeClock
) -> None:
    """L3 is written in batches: its reads promote at the promote job's `hits`."""
    mem = read_through
    m = mem.add("archived", namespace="a")
    mem.demote(m.id, to="l3")
    for _ in range(3):
        clock.advance(minutes=1)
        mem.get(m.id)
    assert tiers(mem)[m.id] == "l3"
    assert [(a.src, a.dst) for a in mem.plan("promote").actions] == [("l3", "l2")]


def test_promote_on_read_evicts_when_l1_is_over_capacity(
    read_through: tiermem.Engine, clock: FakeClock
) -> None:
    mem = read_through
    back = mem.add("comes back", namespace="a")
    mem.demote(back.id, to="l2")
    others = [mem.add(f"resident {i}", namespace="a").id for i in range(10)]
    clock.advance(minutes=1)
    for id_ in others[1:]:
        clock.advance(seconds=1)
        mem.get(id_)  # others[0], then others[1], are now the least recently used
    for _ in range(2):
        clock.advance(minutes=1)
        mem.get(back.id)
    where = tiers(mem)
    assert where[back.id] == "l1"
    assert sum(t == "l1" for t in where.values()) == 9  # down to 0.9 x capacity
    assert where[others[0]] == "l2" and where[others[1]] == "l2"  # the two lru
    jobs = {e["job"] for e in mem.events.read()}
    assert {"promote-on-read", "evict"} <= jobs
    assert len(where) == 11  # nothing lost


def test_promote_on_read_is_off_by_default(mem: tiermem.Engine, clock: FakeClock) -> None:
    m = mem.add("popular", namespace="a")
    mem.demote(m.id, to="l2")
    for _ in range(4):
        mem.get(m.id)
    assert tiers(mem)[m.id] == "l2"  # the module's policy has no on_read: the job decides
    assert not mem.policy.promotes_on_read


def test_access_count_travels_with_a_memory_across_tiers(
    mem: tiermem.Engine, clock: FakeClock
) -> None:
    """A demoted memory keeps its access count (it moves with the row), and so does
    a promoted one: what lfu-style rules rank by, and what the tiers benchmark
    assumes of a key that comes back into L1."""
    m = mem.add("counted", namespace="a")
    for _ in range(3):
        mem.get(m.id)
    for to in ("l2", "l3"):
        mem.demote(m.id, to=to)
        clock.advance(minutes=1)
        assert mem.get(m.id).access_count == {"l2": 4, "l3": 5}[to]
    assert mem.promote(m.id, to="l1").access_count == 5
    clock.advance(minutes=1)
    assert mem.get(m.id).access_count == 6


def test_pinned_memories_never_demoted(mem: tiermem.Engine, clock: FakeClock) -> None:
    m = mem.add("keep me hot", namespace="a", pinned=True)
    clock.advance(days=9)
    assert mem.plan("demote").actions == []
    assert mem.demote(m.id, to="l2").tier == "l2"  # a manual demote may


def test_capacity_evicts_on_write(mem: tiermem.Engine) -> None:
    ids = [mem.add(f"m{i}", namespace="a").id for i in range(11)]
    placed = tiers(mem)
    hot = [i for i in ids if placed[i] == "l1"]
    assert len(hot) <= 10
    assert len(hot) == 9  # evicted down to 90% of capacity
    assert all(placed[i] == "l2" for i in ids if i not in hot)
    assert ids[-1] in hot  # the newest stays hot (lru)


def test_capacity_reject(mem: tiermem.Engine) -> None:
    mem.add("fact 1", namespace="a", kind="semantic")
    mem.add("fact 2", namespace="a", kind="semantic")
    with pytest.raises(tiermem.CapacityError, match="on_full: reject"):
        mem.add("fact 3", namespace="a", kind="semantic")
    res = mem.add_many([{"text": "x", "kind": "semantic"}, {"text": "y"}], namespace="b")
    assert res.ok
    res = mem.add_many([{"text": f"f{i}", "kind": "semantic"} for i in range(3)], namespace="b")
    assert [i is not None for i in res.ids] == [True, False, False]
    assert all(isinstance(e, tiermem.CapacityError) for e in res.errors.values())
    assert sum(1 for m in mem.scan(namespace="b", kinds=["semantic"])) == 2


def test_capacity_warn_logs_once_over_and_writes_everything(
    open_store: OpenStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """on_full: warn writes every item; the count the warning gives is the one after
    the write (add and add_many), and nothing is logged while the group fits."""
    path = tmp_path / "warn.yaml"
    path.write_text("version: 1\nkinds:\n  episodic:\n    l1: {capacity: 3, on_full: warn}\n")
    mem = open_store(policy=str(path))
    with caplog.at_level("WARNING", logger="tiermem.capacity"):
        for i in range(3):
            mem.add(f"m{i}", namespace="a")
        assert not caplog.records
        mem.add("m3", namespace="a")
        mem.add_many([{"text": f"n{i}"} for i in range(2)], namespace="a")
    assert [r.getMessage() for r in caplog.records] == [
        "a/episodic in l1 over capacity: 4/3",
        "a/episodic in l1 over capacity: 6/3",
    ]
    assert sum(1 for _ in mem.scan(namespace="a", tiers=["l1"])) == 6


def test_capacity_reject_in_l2(open_store: OpenStore, tmp_path: Path) -> None:
    """A kind placed in L2 is counted there: its capacity rejects the excess."""
    path = tmp_path / "l2.yaml"
    path.write_text(
        "version: 1\nkinds:\n  semantic:\n    place: l2\n    l2: {capacity: 2, on_full: reject}\n"
    )
    mem = open_store(policy=str(path))
    res = mem.add_many([{"text": f"fact {i}", "kind": "semantic"} for i in range(3)], namespace="a")
    assert [i is not None for i in res.ids] == [True, True, False]
    assert isinstance(res.errors[2], tiermem.CapacityError)
    mem.delete(res.ids[0] or "")
    assert mem.add("fact 9", namespace="a", kind="semantic").tier == "l2"
    with pytest.raises(tiermem.CapacityError, match="a/semantic in l2 is full"):
        mem.add("fact 10", namespace="a", kind="semantic")


def test_checkpoint_and_compact_jobs_run(mem: tiermem.Engine) -> None:
    m = mem.add("x", namespace="a")
    mem.demote(m.id, to="l3")
    mem.delete(m.id)
    assert mem.run("checkpoint").errors == []
    assert mem.run("compact").errors == []
    assert tiers(mem) == {}
    with pytest.raises(tiermem.ValidationError, match="job"):
        mem.plan("defrag")


def test_scheduler_moves_memories_by_itself(open_store: OpenStore, tmp_path: Path) -> None:
    policy = tmp_path / "fast.yaml"
    policy.write_text(
        "version: 1\nkinds:\n  episodic:\n    l1: {idle: 1s}\n    l2: {idle: 1d}\n"
        "    promote: {hits: 2, window: 1h}\n"
    )
    fast = {f"scheduler.{j}": 0.3 for j in ("demote", "promote", "expire", "checkpoint", "compact")}
    mem = open_store(policy=str(policy), overrides=fast)
    idle = mem.add("goes warm", namespace="a")
    expiring = mem.add("goes away", namespace="a", ttl=1)
    hot = mem.add("comes back", namespace="a")
    mem.demote(hot.id, to="l3")
    mem.get(hot.id)
    mem.get(hot.id)
    mem.start_scheduler()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            placed = tiers(mem)
            if (
                placed.get(idle.id) == "l2"
                and expiring.id not in placed
                and placed.get(hot.id) == "l2"
            ):
                break
            time.sleep(0.2)
    finally:
        mem.stop_scheduler()
    placed = tiers(mem)
    assert placed.get(idle.id) == "l2", placed
    assert expiring.id not in placed
    assert placed.get(hot.id) == "l2"
    assert mem.stats().jobs.get("demote", 0) >= 1


def test_read_only_search_counts_l1_accesses(open_store: OpenStore) -> None:
    mem = open_store()
    m = mem.add("shared hot memory", namespace="a")
    reader = open_store(read_only=True)
    reader.search("shared hot memory", namespace="a")
    assert mem.get(m.id).access_count == 2  # the reader's hit + this get


def test_default_ttl_from_policy(open_store: OpenStore, tmp_path: Path) -> None:
    policy = tmp_path / "ttl.yaml"
    policy.write_text("version: 1\nkinds:\n  episodic:\n    ttl: 1h\n")
    clock = FakeClock()
    mem = open_store(policy=str(policy), clock=clock)
    m = mem.add("fleeting", namespace="a")
    assert m.expires_at == clock.now + timedelta(hours=1)
    assert mem.add("kept", namespace="a", ttl=7200).expires_at == clock.now + timedelta(hours=2)
    assert datetime.now(UTC) > clock.now  # the fake clock is in the past: nothing else expires


def test_events_log_survives_a_torn_append(tmp_path: Path) -> None:
    from tiermem.events import EventLog
    from tiermem.model import Action

    log = EventLog(tmp_path)
    act = Action(id="x", namespace="n", action="move", src="l1", dst="l2", reason="idle")
    log.append("r1", "demote", datetime.now(UTC), [act])
    with open(log.path, "a") as fh:
        fh.write('{"at": "2026-')  # a crash mid-append
    log.append("r2", "demote", datetime.now(UTC), [act])
    assert [e["run"] for e in log.read()] == ["r1", "r2"]


def test_reload_policy_accepts_good_and_rejects_bad(open_store: OpenStore, tmp_path: Path) -> None:
    path = tmp_path / "live.yaml"
    path.write_text("version: 1\nkinds:\n  episodic:\n    l1: {capacity: 10}\n")
    mem = open_store(policy=str(path))
    assert mem.policy.for_kind("episodic").l1.capacity == 10
    path.write_text("version: 1\nkinds:\n  episodic:\n    l1: {capacity: -3}\n")
    assert mem.reload_policy() is False
    assert mem.policy.for_kind("episodic").l1.capacity == 10  # the old rules stay
    path.write_text("version: 1\nkinds:\n  episodic:\n    l1: {capacity: 20}\n")
    assert mem.reload_policy() is True
    assert mem.policy.for_kind("episodic").l1.capacity == 20
    assert mem.lifecycle.policy is mem.policy  # jobs plan with the new rules


@pytest.mark.parametrize(("cold_batch", "files"), [(None, 1), (4, 3)])
def test_moves_into_l3_use_their_own_batch(
    open_store: OpenStore, cold_batch: int | None, files: int
) -> None:
    """Each batch into L3 writes a file per namespace: `moves.cold_batch` sets how many."""
    extra = {"moves.batch": 3} | ({} if cold_batch is None else {"moves.cold_batch": cold_batch})
    mem = open_store(overrides=extra)
    ids = mem.add_many([{"text": f"fact {i}"} for i in range(10)], namespace="n").ids
    assert mem.mover.move("l1", "l3", [i for i in ids if i]) == 10
    assert len(mem.backends.l3.files("n")) == files
    assert {m.tier for m in mem.scan(namespace="n")} == {"l3"}
