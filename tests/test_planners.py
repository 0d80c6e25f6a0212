"""Planners are pure: table-driven tests with a fake clock, no tiers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tiermem.lifecycle.planners import (
    Group,
    human,
    plan_demote,
    plan_expire,
    plan_promote,
    plan_promote_on_read,
)
from tiermem.lifecycle.policy import Policy
from tiermem.lifecycle.stats import ItemStats

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def item(
    id_: str,
    *,
    kind: str = "episodic",
    idle: timedelta = timedelta(0),
    inserted: timedelta = timedelta(0),
    **kw: Any,
) -> ItemStats:
    return ItemStats(
        id=id_,
        namespace="ns",
        kind=kind,
        created_at=NOW - inserted,
        inserted_at=NOW - inserted,
        last_accessed_at=NOW - idle,
        access_count=kw.pop("count", 0),
        **kw,
    )


def policy(**kinds: Any) -> Policy:
    return Policy.model_validate({"version": 1, "kinds": kinds})


H, D = timedelta(hours=1), timedelta(days=1)
BASE = {"l1": {"capacity": 100, "idle": "1h", "evict": ["lru"]}, "l2": {"idle": "30d"}}

DEMOTE_CASES = [
    # (name, kind policy, tier, items, expected {id: reason fragment})
    ("idle", BASE, "l1", [item("a", idle=2 * H), item("b", idle=H / 2)], {"a": "idle 2h >= 1h"}),
    ("idle exactly at the limit", BASE, "l1", [item("a", idle=H)], {"a": "idle 1h"}),
    ("pinned never moves", BASE, "l1", [item("a", idle=9 * D, pinned=True)], {}),
    ("l2 idle to l3", BASE, "l2", [item("a", idle=31 * D), item("b", idle=D)], {"a": "idle 31d"}),
    ("l3 is the bottom", BASE, "l3", [item("a", idle=900 * D)], {}),
    (
        "aged",
        {"l1": {"age": "1d", "idle": None}},
        "l1",
        [item("a", inserted=2 * D)],
        {"a": "in l1 for 2d"},
    ),
    (
        "capacity by lru",
        {"l1": {"capacity": 2, "idle": None, "evict": ["lru"]}},
        "l1",
        [item("a", idle=3 * H), item("b", idle=H), item("c", idle=2 * H), item("d")],
        {"a": "over capacity (4/2 items); picked by lru", "c": "picked by lru"},
    ),
    (
        "capacity by lfu, pinned excluded",
        {"l1": {"capacity": 1, "idle": None, "evict": ["lfu"]}},
        "l1",
        [item("a", count=1, pinned=True), item("b", count=5), item("c", count=2)],
        {"c": "lfu", "b": "lfu"},
    ),
    (
        "ttl first, then lru fills",
        {"l1": {"capacity": 2, "idle": None, "evict": ["ttl", "lru"]}},
        "l1",
        [
            item("a", idle=H, expires_at=NOW - H),
            item("b", idle=5 * H),
            item("c"),
            item("d", idle=2 * H),
        ],
        {"a": "picked by ttl", "b": "picked by lru"},
    ),
    (
        "bytes cap",
        {"l1": {"capacity": None, "max_bytes": 250, "idle": None, "evict": ["fifo"]}},
        "l1",
        [
            item("a", inserted=3 * H, size=100),
            item("b", inserted=2 * H, size=100),
            item("c", size=100),
        ],
        {"a": "300/250 bytes"},
    ),
    (
        "warn does not evict",
        {"l1": {"capacity": 1, "idle": None, "on_full": "warn"}},
        "l1",
        [item("a"), item("b")],
        {},
    ),
]


@pytest.mark.parametrize(
    ("name", "rules", "tier", "items", "want"), DEMOTE_CASES, ids=[c[0] for c in DEMOTE_CASES]
)
def test_demote(
    name: str, rules: dict[str, Any], tier: str, items: list[ItemStats], want: dict[str, str]
) -> None:
    actions, notes = plan_demote(
        [Group(tier, "ns", "episodic", tuple(items))], policy(episodic=rules), NOW
    )  # type: ignore[arg-type]
    got = {a.id: a.reason for a in actions}
    assert got.keys() == want.keys(), got
    for id_, fragment in want.items():
        assert fragment in got[id_], (got[id_], fragment)
    for a in actions:
        assert a.action == "move" and a.src == tier and a.dst == {"l1": "l2", "l2": "l3"}[tier]
    if name == "warn does not evict":
        assert notes and "on_full=warn" in notes[0]


def test_procedural_pin_keeps_current_versions_warm() -> None:
    p = policy(procedural={"pin": "l2", "l2": {"idle": "1d"}})
    current = item("cur", kind="procedural", idle=9 * D)
    old = item("old", kind="procedural", idle=9 * D, superseded=True)
    actions, _ = plan_demote([Group("l2", "ns", "procedural", (current, old))], p, NOW)
    assert [a.id for a in actions] == ["old"]
    actions, _ = plan_demote([Group("l1", "ns", "procedural", (current,))], p, NOW)
    assert [a.id for a in actions] == ["cur"]  # l1 -> l2 is still allowed


PROMOTE_CASES = [
    ("3 hits in window", [NOW - H / 2, NOW - H / 4, NOW - H / 8], "l2", "l1"),
    ("one hit outside the window", [NOW - 2 * H, NOW - H / 4, NOW - H / 8], "l2", None),
    ("l3 goes to l2", [NOW - H / 2, NOW - H / 4, NOW], "l3", "l2"),
    ("future hits do not count", [NOW - H / 2, NOW - H / 4, NOW + H], "l2", None),
]


@pytest.mark.parametrize(
    ("name", "hits", "tier", "dst"), PROMOTE_CASES, ids=[c[0] for c in PROMOTE_CASES]
)
def test_promote_window(name: str, hits: list[datetime], tier: str, dst: str | None) -> None:
    p = policy(episodic={"promote": {"hits": 3, "window": "1h"}})
    actions = plan_promote([(tier, item("a", recent_hits=tuple(hits)))], p, NOW)  # type: ignore[list-item]
    assert [a.dst for a in actions] == ([dst] if dst else [])
    if dst:
        assert "3 hits within 1h" in actions[0].reason


def test_promote_skips_expired_superseded_and_disabled() -> None:
    hits = (NOW - H / 2, NOW - H / 4, NOW - H / 8)
    p = policy(episodic={"promote": {"hits": 3, "window": "1h"}}, semantic={"promote": None})
    cands = [
        ("l2", item("exp", recent_hits=hits, expires_at=NOW)),
        ("l2", item("sup", recent_hits=hits, superseded=True)),
        ("l2", item("sem", kind="semantic", recent_hits=hits)),
        ("l1", item("top", recent_hits=hits)),
    ]
    assert plan_promote(cands, p, NOW) == []  # type: ignore[arg-type]


def test_promote_on_read_only_for_kinds_that_ask() -> None:
    """At a read, only L2 memories of kinds that set on_read promote, by its count."""
    hits = (NOW - 2 * H, NOW - H / 2, NOW)
    p = policy(
        episodic={"promote": {"hits": 5, "window": "1h", "on_read": 2}},
        semantic={"promote": {"hits": 1, "window": "1h"}},
    )
    read = [
        ("l2", item("ep", recent_hits=hits)),
        ("l2", item("ep-one-hit", recent_hits=(NOW - 2 * H, NOW))),  # one outside the window
        ("l3", item("ep-cold", recent_hits=hits)),  # L3: the job's, at its 5 hits
        ("l2", item("sem", kind="semantic", recent_hits=hits)),  # no on_read
        ("l2", item("ep-sup", recent_hits=hits, superseded=True)),
    ]
    actions = plan_promote_on_read(read, p, NOW)  # type: ignore[arg-type]
    assert [(a.id, a.src, a.dst) for a in actions] == [("ep", "l2", "l1")]
    assert actions[0].reason == "2 hits within 1h (>= on_read 2)"
    assert p.promotes_on_read and not policy().promotes_on_read


def test_expire_ttl_and_retention() -> None:
    p = policy(episodic={"l3": {"retain": "365d"}})
    groups = [
        Group(
            "l1",
            "ns",
            "episodic",
            (item("ttl", expires_at=NOW - H), item("live", expires_at=NOW + H)),
        ),
        Group(
            "l3",
            "ns",
            "episodic",
            (
                item("old", inserted=400 * D),
                item("young", inserted=10 * D),
                item("pinned", inserted=400 * D, pinned=True),
            ),
        ),
    ]
    actions = {a.id: a for a in plan_expire(groups, p, NOW)}
    assert actions.keys() == {"ttl", "old"}
    assert actions["ttl"].action == "delete" and "expired at" in actions["ttl"].reason
    assert actions["old"].src == "l3" and "retain 365d" in actions["old"].reason


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=20), "20m"),
        (3 * H, "3h"),
        (12 * D, "12d"),
    ],
)
def test_human_durations(delta: timedelta, text: str) -> None:
    assert human(delta) == text
