"""The fast paths of a large demote keep what the slow ones did: plans decided
over stats columns, actions built unchecked, event lines per batch, replies read
straight from hiredis, and moves out of L1 overlapped with Redis."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import redis

from tests.tables import by_id, make_table
from tiermem.errors import TierMemError
from tiermem.events import _ENCODE, EventLog, _line, _lines
from tiermem.journal import Journal
from tiermem.lifecycle import planned, planners
from tiermem.lifecycle.jobs import _batches
from tiermem.lifecycle.planned import Moves, Planned, rows_of
from tiermem.lifecycle.planners import Group, human, plan_demote
from tiermem.lifecycle.policy import Policy
from tiermem.lifecycle.stats import ItemStats, StatsColumns
from tiermem.model import TIERS, Action
from tiermem.moves import Mover
from tiermem.tiers import hot_codec as codec
from tiermem.tiers import resp
from tiermem.tiers.hot import HotTier
from tiermem.tiers.warm import WarmTier

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


# -- plans over columns ---------------------------------------------------------


def _reference(group: Group, policy: Policy, now: datetime) -> tuple[list[Action], list[str]]:
    """`demote_group` as it was, one `ItemStats` at a time (fill 1.0)."""
    rules = policy.for_kind(group.kind)
    tr = rules.l1 if group.tier == "l1" else rules.l2
    dst = TIERS[TIERS.index(group.tier) + 1]
    pin = rules.pin

    def movable(i: ItemStats) -> bool:
        return not i.pinned and (
            pin is None or i.superseded or TIERS.index(dst) <= TIERS.index(pin)
        )

    eligible = [i for i in group.items if movable(i)]
    chosen: dict[str, str] = {}
    for item in eligible:
        if item.expires_at is not None and item.expires_at <= now:
            continue
        if tr.idle is not None and now - item.last_accessed_at >= tr.idle:
            chosen[item.id] = f"idle {human(now - item.last_accessed_at)} >= {human(tr.idle)}"
        elif tr.age is not None and now - item.inserted_at >= tr.age:
            age = human(now - item.inserted_at)
            chosen[item.id] = f"in {group.tier} for {age} >= {human(tr.age)}"
    left = [i for i in group.items if i.id not in chosen]
    size = sum(i.size for i in left)
    parts, extra_items, extra_bytes = [], 0, 0
    if tr.capacity is not None and len(left) > tr.capacity:
        parts.append(f"{len(left)}/{tr.capacity} items")
        extra_items = len(left) - tr.capacity
    if tr.max_bytes is not None and size > tr.max_bytes:
        parts.append(f"{size}/{tr.max_bytes} bytes")
        extra_bytes = size - tr.max_bytes
    over, notes = ", ".join(parts), []
    if over and tr.on_full == "evict":
        pool = [i for i in eligible if i.id not in chosen]
        chosen.update(planners._evict(pool, tr.evict, now, (extra_items, extra_bytes), over))
    elif over:
        where = f"{group.namespace}/{group.kind} in {group.tier}"
        notes.append(f"{where} is over capacity ({over}); on_full={tr.on_full}: not evicting")
    actions = [
        Action(id=i, namespace=group.namespace, action="move", src=group.tier, dst=dst, reason=r)
        for i, r in chosen.items()
    ]
    return actions, notes


def _random_items(rng: random.Random, n: int) -> list[ItemStats]:
    def ago() -> timedelta:
        return timedelta(seconds=rng.choice([0, 59, 3599, 3600, 3601, 7200.5, 86_400 * 3]))

    return [
        ItemStats(
            id=f"m{i:03d}",
            namespace="ns",
            kind="procedural",
            created_at=NOW - ago(),
            inserted_at=NOW - ago(),
            last_accessed_at=NOW - ago(),
            access_count=rng.randrange(5),
            importance=rng.random(),
            expires_at=rng.choice([None, None, NOW - H, NOW + H, NOW]),
            pinned=rng.random() < 0.2,
            size=rng.randrange(100, 1000),
            superseded=rng.random() < 0.3,
        )
        for i in range(n)
    ]


RULES = [
    {"l1": {"idle": "1h"}},
    {"l1": {"idle": None, "age": "1h"}, "pin": "l1"},
    {"l1": {"idle": "1h", "age": "2h", "capacity": 5, "evict": ["lru", "fifo"]}},
    {"l1": {"idle": None, "max_bytes": 3000, "evict": ["lfu"]}, "pin": "l2"},
    {"l1": {"idle": "1h", "capacity": 3, "on_full": "warn"}},
    {"l1": {"idle": "1h"}, "l2": {"idle": "1d", "capacity": 4, "evict": ["ttl", "lru"]}},
]


@pytest.mark.parametrize("rules", RULES)
@pytest.mark.parametrize("tier", ["l1", "l2"])
def test_columnar_demote_plans_what_the_item_by_item_one_did(
    rules: dict[str, Any], tier: str
) -> None:
    policy = Policy.model_validate({"version": 1, "kinds": {"procedural": rules}})
    rng = random.Random(7)
    for n in (0, 1, 12, 40):
        items = tuple(_random_items(rng, n))
        want = _reference(Group(tier, "ns", "procedural", items), policy, NOW)  # type: ignore[arg-type]
        for held in (items, StatsColumns.of(items)):
            group = Group(tier, "ns", "procedural", held)  # type: ignore[arg-type]
            assert plan_demote([group], policy, NOW) == want


def test_a_limit_before_year_one_never_fires() -> None:
    policy = Policy.model_validate({"version": 1, "kinds": {"episodic": {"l1": {"idle": "1h"}}}})
    early = datetime(1, 1, 1, 0, 30, tzinfo=UTC)
    item = ItemStats("a", "ns", "episodic", early, early, early, 0)
    assert plan_demote([Group("l1", "ns", "episodic", (item,))], policy, early) == ([], [])


def test_stats_columns_are_a_sequence_of_item_stats() -> None:
    items = _random_items(random.Random(1), 5)
    cols = StatsColumns.of(items)
    assert StatsColumns.of(cols) is cols
    assert len(cols) == 5
    assert list(cols) == items
    assert cols[3] == items[3]
    assert cols[-1] == items[-1]
    assert cols[1:4:2] == (items[1], items[3])
    assert list(cols.take([4, 0])) == [items[4], items[0]]


def test_planned_actions_are_the_actions_validation_builds() -> None:
    for dst in ("l2", None):
        fast = planned.action("i", "ns ✓", "move", "l1", dst, "idle 2h >= 1h")  # type: ignore[arg-type]
        slow = Action(
            id="i", namespace="ns ✓", action="move", src="l1", dst=dst, reason="idle 2h >= 1h"
        )  # type: ignore[arg-type]
        assert fast == slow
        assert fast.model_dump() == slow.model_dump()
        assert fast.model_fields_set == slow.model_fields_set
        assert repr(fast) == repr(slow)


def _planned() -> Planned:
    def moves(ns: str, dst: str, n: int) -> Moves:
        ids = [f"{ns}-{dst}-{i}" for i in range(n)]
        return Moves(ns, "l1", dst, ids, [f"why {i % 3}" for i in range(n)])  # type: ignore[arg-type]

    return Planned(
        [moves("b", "l2", 5), moves("a", "l3", 3), moves("a", "l2", 4), moves("b", "l2", 2)]
    )


def test_planned_moves_are_a_sequence_of_actions() -> None:
    p = _planned()
    flat = list(p)
    assert len(p) == len(flat) == 14
    assert flat[0] == Action(
        id="b-l2-0", namespace="b", action="move", src="l1", dst="l2", reason="why 0"
    )
    assert [p[i] for i in range(-14, 14)] == flat + flat
    assert p[3:9:2] == flat[3:9:2]
    assert p.parts[1][1:] == flat[6:8]
    assert p.ids() == [a.id for a in flat]
    assert p.namespaces() == [a.namespace for a in flat]
    assert list(p.action_rows()) == [tuple(a.__dict__.values()) for a in flat]
    assert list(rows_of(p)) == list(rows_of(flat)) == list(p.action_rows())
    with pytest.raises(IndexError):
        p[14]
    assert len(Planned([])) == 0 and list(Planned([])) == []


@pytest.mark.parametrize("size", [1, 3, 4, 5, 100])
def test_planned_batches_are_the_batches_of_their_actions(size: int) -> None:
    p = _planned()
    sizes = {"l2": size, "l3": size + 1}
    want = _batches(list(p), sizes.__getitem__)
    got = _batches(p, sizes.__getitem__)
    assert [list(b) for b in got] == want
    assert all(isinstance(b, Planned) for b in got)


def test_planned_moves_log_the_events_their_actions_would(tmp_path: Path) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    a, b = EventLog(tmp_path / "a"), EventLog(tmp_path / "b")
    a.append("r", "demote", at, _planned())
    b.append("r", "demote", at, list(_planned()))
    assert a.path.read_text() == b.path.read_text()
    assert len(list(a.read())) == 14


# -- event lines ----------------------------------------------------------------


def test_event_lines_of_a_batch_are_the_lines_one_by_one() -> None:
    head = _ENCODE({"at": "t", "run": "r", "job": "demote"})[:-1]
    acts = [
        Action(id=f"x{i}é", namespace="n\\s", action="move", src="l1", dst=d, reason=r)
        for i, (d, r) in enumerate([("l2", 'a "b"'), (None, "r"), ("l2", 'a "b"'), ("l3", "ü")])
    ]
    odd = Action.model_construct(id=7, namespace="n", action="move", src="l1", dst="l2", reason="r")
    batch = [*acts, odd, acts[0]]
    assert _lines(head, batch) == [_line(head, a.__dict__) for a in batch]


# -- replies read straight from hiredis -----------------------------------------


def test_pipelined_replies_and_errors_come_back_in_place(
    redis_client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:s"
    redis_client.set(key, "1")
    got = resp.pipeline(redis_client, [("GET", key), ("HGET", key, "f"), ("PING",)], check=False)
    assert got[0] == b"1"
    assert isinstance(got[1], redis.ResponseError)
    assert got[2] in (b"PONG", "PONG", True)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        resp.pipeline(redis_client, [("HGET", key, "f")])
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):  # failed while running
        resp.transaction(redis_client, [("HSET", key, "a", "b")])
    with pytest.raises(redis.ResponseError, match="wrong number"):  # refused: nothing runs
        resp.transaction(redis_client, [("DEL", key), ("HSET", key)])
    assert redis_client.get(key) == b"1"
    assert resp.transaction(redis_client, [("GET", key), ("DEL", key)]) == [b"1", 1]


def test_a_cancelled_pending_leaves_no_reply_for_the_next_user(
    redis_client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:c"
    redis_client.set(key, "v")
    for _ in range(3):
        pending = resp.Pending(redis_client, resp.pack_many(b"GET", [key] * 50, []), 50)
        pending.cancel()
        pending.cancel()  # twice is harmless
        assert resp.pipeline(redis_client, [("GET", key), ("PING",)])[0] == b"v"
    pending = resp.Pending(redis_client, resp.pack_many(b"GET", [key], []), 1)
    assert pending.wait() == [b"v"]
    with pytest.raises(RuntimeError):
        pending.wait()


def test_packed_reads_are_what_hiredis_packs() -> None:
    from hiredis import pack_command

    keys = ["a:{ns ✓}:m:1", "b", ""]
    want = b"".join(pack_command(codec.fetch_command(k)) for k in keys)  # type: ignore[arg-type]
    assert codec.fetch_packed(keys) == want
    assert resp.pack_many(b"GET", ["k"], []) == pack_command(("GET", "k"))


# -- L1 reads -------------------------------------------------------------------


def test_get_by_known_namespaces_skips_the_directory(
    hot_tier: HotTier, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = make_table("a", 4)
    hot_tier.put(t)
    ids = t.column("id").to_pylist()
    monkeypatch.setattr(hot_tier, "_locate", lambda ids: pytest.fail("directory read"))
    assert by_id(hot_tier.get(ids, namespaces=["a"] * 4)) == by_id(t)
    assert hot_tier.get(ids[:2], namespaces=["b", "b"]).num_rows == 0  # not there: not found
    assert by_id(hot_tier.fetch_later(ids, ["a"] * 4).wait()) == by_id(t)


def test_light_of_many_namespaces_streams_what_light_reads(
    hot_tier: HotTier, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tiermem.tiers.hot_redis as hot_redis

    monkeypatch.setattr(hot_redis, "BATCH", 3)  # several script calls per namespace
    for ns, n in (("a", 7), ("b", 1), ("c", 4)):
        hot_tier.put(make_table(ns, n, seed=n))
    hot_tier.touch([f"c-4-{i}" for i in range(2)], NOW)
    one_by_one = [(ns, *hot_tier.light(ns)) for ns in ("a", "b", "c", "gone")]
    # a script Redis does not know yet: loaded on its first NOSCRIPT, mid-stream
    fresh = codec.LIGHT_LUA + f"-- {prefix_of(hot_tier)}\n"
    monkeypatch.setattr(hot_tier, "_light", hot_tier.client.register_script(fresh))
    assert list(hot_tier.lights(["a", "b", "c", "gone"])) == one_by_one
    assert one_by_one[2][3] and not one_by_one[0][3]  # c's hits were read


def prefix_of(tier: HotTier) -> str:
    return tier.keys.prefix


# -- moves out of L1, overlapped with Redis -------------------------------------


def _mover(hot_tier: HotTier, l2: WarmTier, tmp_path: Path, batch: int = 4) -> Mover:
    tiers = {"l1": hot_tier, "l2": l2}
    return Mover(tiers, tmp_path / "journal", batch, lambda: NOW)  # type: ignore[arg-type]


def _tables() -> pa.Table:
    return pa.concat_tables([make_table("a", 6, seed=1), make_table("b", 5, seed=2)])


def test_a_planned_move_out_of_l1_moves_every_row_once(hot_tier: HotTier, tmp_path: Path) -> None:
    t = _tables()
    hot_tier.put(t)
    l2 = WarmTier(tmp_path / "l2", t.schema.field("embedding").type.list_size)
    ids, nss = t.column("id").to_pylist(), t.column("namespace").to_pylist()
    mover = _mover(hot_tier, l2, tmp_path)
    assert mover.move("l1", "l2", [*ids, ids[0]], [*nss, nss[0]]) == 11  # a repeat moves once
    assert hot_tier.namespaces() == set()
    moved = l2.get(ids)
    assert moved.num_rows == 11
    assert set(moved.column("tiered_at").to_pylist()) == {NOW}
    assert by_id(moved.drop_columns(["tiered_at"])) == by_id(t.drop_columns(["tiered_at"]))
    assert not Journal(tmp_path / "journal").pending()
    assert mover.move("l1", "l2", ids, nss) == 0  # again: nothing left to move


def test_a_wrong_namespace_moves_nothing(hot_tier: HotTier, tmp_path: Path) -> None:
    t = make_table("a", 3)
    hot_tier.put(t)
    l2 = WarmTier(tmp_path / "l2", t.schema.field("embedding").type.list_size)
    ids = t.column("id").to_pylist()
    assert _mover(hot_tier, l2, tmp_path).move("l1", "l2", ids, ["b"] * 3) == 0
    assert hot_tier.ids("a") == ids
    assert not Journal(tmp_path / "journal").pending()


def test_a_failed_batch_loses_nothing_and_recovery_finishes(
    hot_tier: HotTier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = _tables()
    hot_tier.put(t)
    l2 = WarmTier(tmp_path / "l2", t.schema.field("embedding").type.list_size)
    ids, nss = t.column("id").to_pylist(), t.column("namespace").to_pylist()
    mover = _mover(hot_tier, l2, tmp_path)
    real, puts = l2.put, []

    def put(rows: pa.Table) -> None:
        if len(puts) == 1:
            raise TierMemError("disk full")
        puts.append(rows.num_rows)
        real(rows)

    monkeypatch.setattr(l2, "put", put)
    with pytest.raises(TierMemError, match="disk full"):
        mover.move("l1", "l2", ids, nss)
    # batch 1 finished (its delete waited for, its entry gone); batch 2 left its entry
    assert len(Journal(tmp_path / "journal").pending()) == 1
    assert l2.get(ids).num_rows == 4
    assert hot_tier.get(ids).num_rows == 7
    assert _copies(hot_tier, l2, ids) == dict.fromkeys(ids, 1)
    assert hot_tier.client.ping()  # the pool's connections are clean
    monkeypatch.setattr(l2, "put", real)
    mover.recover()
    assert not Journal(tmp_path / "journal").pending()
    assert mover.move("l1", "l2", ids) == 7
    assert _copies(hot_tier, l2, ids) == dict.fromkeys(ids, 1)
    assert hot_tier.get(ids).num_rows == 0


def _copies(hot_tier: HotTier, l2: WarmTier, ids: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for tier in (hot_tier, l2):
        for id_ in tier.get(ids).column("id").to_pylist():
            out[id_] = out.get(id_, 0) + 1
    return out


def test_a_cut_move_runs_exactly_those_batches_and_says_when_each_is_done(
    hot_tier: HotTier, tmp_path: Path
) -> None:
    t = _tables()
    hot_tier.put(t)
    l2 = WarmTier(tmp_path / "l2", t.schema.field("embedding").type.list_size)
    ids, nss = t.column("id").to_pylist(), t.column("namespace").to_pylist()
    mover, done = _mover(hot_tier, l2, tmp_path), []
    each = lambda i, n: done.append((i, n, hot_tier.get(ids).num_rows))  # noqa: E731
    gone = [*ids[:2], "nope", *ids[2:]]
    assert mover.move("l1", "l2", gone, [*nss[:2], "a", *nss[2:]], cut=[3, 6, 3], each=each) == 11
    # batch by batch, each reported once its rows left L1
    assert done == [(0, 2, 9), (1, 6, 3), (2, 3, 0)]
    back: list[tuple[int, int]] = []  # out of a tier other than L1: the same reports
    assert mover.move("l2", "l1", ids, cut=[10, 1], each=lambda i, n: back.append((i, n))) == 11
    assert back == [(0, 10), (1, 1)]
    with pytest.raises(ValueError, match="distinct"):
        mover.move("l1", "l2", [ids[0], ids[0]], cut=[1, 1])
    with pytest.raises(ValueError, match="add up"):
        mover.move("l1", "l2", ids, cut=[1])


POLICY = "version: 1\nkinds:\n  episodic:\n    l1: {idle: 1h}\n"


def test_a_failed_batch_of_a_demote_is_reported_and_the_others_move(
    open_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_engine import FakeClock

    (tmp_path / "p.yaml").write_text(POLICY)
    clock = FakeClock()
    mem = open_store(policy=str(tmp_path / "p.yaml"), clock=clock, overrides={"moves.batch": 4})
    ids = mem.add_many([{"text": f"m {i}", "namespace": "a"} for i in range(14)]).ids
    clock.advance(hours=2)
    l2, real, puts = mem.backends.l2, mem.backends.l2.put, []

    def put(rows: pa.Table) -> None:
        puts.append(rows.num_rows)
        if len(puts) == 2:
            raise TierMemError("disk full")
        real(rows)

    monkeypatch.setattr(l2, "put", put)
    seen: list[tuple[int, int]] = []
    report = mem.lifecycle.run("demote", clock(), lambda d, t: seen.append((d, t)))
    assert report.moved == 10 and report.errors == ["TierMemError: disk full"]
    assert seen == [(4, 14), (8, 14), (12, 14), (14, 14)]  # the failed batch counts as ended
    logged = [e["id"] for e in mem.events.read()]
    assert len(logged) == 10 and len(set(logged)) == 10
    tiers = {m.id: m.tier for m in mem.scan()}
    assert sorted(tiers) == sorted(ids)
    assert sorted(i for i, t in tiers.items() if t == "l2") == sorted(logged)
    assert len(Journal(mem.path / "moves").pending()) == 1  # the failed batch's
    monkeypatch.setattr(l2, "put", real)
    report = mem.run("demote")
    assert report.moved == 4 and not report.errors
    assert {m.tier for m in mem.scan()} == {"l2"}


# -- demote snapshots read what the rules need ----------------------------------

BOUNDED = "version: 1\nkinds:\n  episodic:\n    l1: {idle: 1h, capacity: null}\n"


def _groups_by(mem: Any, policy: Policy | None) -> list[tuple[str, str, list[Action]]]:
    from tiermem.lifecycle import snapshot

    groups = snapshot.hot_groups(mem.backends.l1, 8, policy=policy)
    plans = [(g.namespace, g.kind, plan_demote([g], mem.policy, mem.clock())[0]) for g in groups]
    return sorted(plans, key=lambda p: (p[0], p[1]))


def test_a_demote_reads_only_what_its_rules_need_and_plans_the_same(
    open_store: Any, tmp_path: Path, redis_client: redis.Redis
) -> None:
    from tests.test_engine import FakeClock
    from tiermem.lifecycle import snapshot

    (tmp_path / "p.yaml").write_text(BOUNDED)  # episodic: no capacity; semantic: 1,000
    clock = FakeClock()
    mem = open_store(policy=str(tmp_path / "p.yaml"), clock=clock)
    items = [{"text": f"e {i}", "namespace": "a", "kind": "episodic"} for i in range(5)]
    items += [{"text": f"s {i}", "namespace": "b", "kind": "semantic"} for i in range(3)]
    items += [
        {"text": f"m {i}", "namespace": ns, "kind": "episodic"} for ns in "cd" for i in range(2)
    ]
    items += [{"text": "m", "namespace": ns, "kind": "semantic"} for ns in "cd"]
    ids = mem.add_many(items).ids
    mem.add("pinned", namespace="a", pinned=True)
    clock.advance(hours=2)
    mem.get(ids[0])  # stays hot
    # d's kind index misses its semantic memory: read for a decision, then whole
    d_semantic = ids[-1]
    redis_client.zrem(mem.backends.l1.keys.kind_index("d", "semantic"), d_semantic)
    assert mem.backends.l1.kinds(["a", "b", "c", "d"]) == {
        "a": {"episodic"},
        "b": {"semantic"},
        "c": {"episodic", "semantic"},
        "d": {"episodic"},
    }
    assert _groups_by(mem, mem.policy) == _groups_by(mem, None)
    groups = {
        (g.namespace, g.kind): g for g in snapshot.hot_groups(mem.backends.l1, 8, policy=mem.policy)
    }
    with pytest.raises(LookupError, match="was not read"):
        list(groups[("a", "episodic")].items)
    assert len(list(groups[("c", "episodic")].items)) == 2  # c holds a bounded kind: all read
    assert len(list(groups[("d", "semantic")].items)) == 1
    report = mem.run("demote")
    assert report.moved == len(ids) - 1 and not report.errors


DEMOTE_CHILD = """
import json, os, sys, tiermem
from datetime import timedelta
path, url, prefix, point = sys.argv[1:5]
class Clock:
    now = __import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").UTC)
    def __call__(self):
        return self.now
clock = Clock()
open(path + "/p.yaml", "w").write("version: 1\\nkinds:\\n  episodic:\\n    l1: {idle: 1h}\\n")
mem = tiermem.open(path, embedder=tiermem.HashingEmbedder(DIM), policy=path + "/p.yaml",
                   clock=clock, **{"l1.url": url, "l1.prefix": prefix, "embedding.dim": DIM,
                                   "moves.batch": 10})
items = [{"text": f"memory number {i}", "namespace": f"n{i % 3}"} for i in range(45)]
ids = [i for i in mem.add_many(items).ids if i]
with open(path + "/acked.json", "w") as fh:
    json.dump(ids, fh)
clock.now += timedelta(hours=2)
os.environ["TIERMEM_FAILPOINT"] = point
mem.run("demote")
print("finished without crashing", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["move.journaled:3", "move.copied:2", "move.deleted:2"])
def test_kill_during_a_pipelined_demote_loses_nothing(
    tmp_path: Path, redis_url: str, prefix: str, open_store: Any, point: str
) -> None:
    """SIGKILL mid-run, with a batch's delete and the next batch's read in flight."""
    import json

    from tests.conftest import DIM, run_until_killed

    path = tmp_path / "store"
    path.mkdir()
    child = DEMOTE_CHILD.replace("DIM", str(DIM))
    run_until_killed(child, str(path), redis_url, prefix, point)
    acked = json.loads((path / "acked.json").read_text())
    mem = open_store(path)
    seen = [(m.id, m.tier) for m in mem.scan()]
    assert sorted(i for i, _ in seen) == sorted(acked), "lost or duplicated memories"
    assert {t for _, t in seen} == {"l1", "l2"}  # some moved, some not yet
    assert not Journal(path / "moves").pending(), "journal not cleared by recovery"
