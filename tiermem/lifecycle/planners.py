"""Planners: pure functions from stats snapshots, a policy and a clock to a Plan.

Nothing here reads a tier or the wall clock; the engine builds snapshots
(`Group`s) and applies the returned actions through the one executor.
Every action carries a reason a person can read.

Rules (POLICY.md):
- demote: from l1/l2 one tier colder when idle (``now - last_accessed_at
  >= idle``), aged (``now - inserted_at >= age``), or over capacity (items
  or bytes; victims picked by the tier's ``evict`` selectors in order);
- promote: one tier hotter after ``hits`` accesses within ``window``;
- expire: delete when ``expires_at <= now``, or after ``retain`` in l3.
Pinned memories are never moved colder by a rule; a kind's ``pin:`` keeps
its current (not superseded) memories at that tier or hotter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tiermem.lifecycle import selectors
from tiermem.lifecycle.policy import KindPolicy, Policy, TierRules
from tiermem.lifecycle.stats import ItemStats
from tiermem.model import TIERS, Action, TierName


@dataclass(frozen=True)
class Group:
    """The stats of one kind in one namespace in one tier."""

    tier: TierName
    namespace: str
    kind: str
    items: tuple[ItemStats, ...]


def human(delta: timedelta) -> str:
    """A short duration: 45s, 20m, 3h, 12d."""
    secs = int(delta.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if (secs >= size and secs % size == 0) or secs >= 10 * size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def _colder(tier: TierName) -> TierName:
    return TIERS[TIERS.index(tier) + 1]


def _hotter(tier: TierName) -> TierName:
    return TIERS[TIERS.index(tier) - 1]


def _expired(item: ItemStats, now: datetime) -> bool:
    return item.expires_at is not None and item.expires_at <= now


def _movable(item: ItemStats, dst: TierName, rules: KindPolicy) -> bool:
    """May a rule move `item` to the colder tier `dst`?"""
    if item.pinned:
        return False
    pin = rules.pin
    return pin is None or item.superseded or TIERS.index(dst) <= TIERS.index(pin)


def _rules(rules: KindPolicy, tier: TierName) -> TierRules:
    return rules.l1 if tier == "l1" else rules.l2


def demote_group(
    group: Group, policy: Policy, now: datetime, fill: float = 1.0
) -> tuple[list[Action], list[str]]:
    """Demotions of one group, and notes (warnings) about it.

    Over capacity, victims are picked until the group is at `fill` of it.
    """
    if group.tier == "l3":
        return [], []
    rules = policy.for_kind(group.kind)
    tr, dst = _rules(rules, group.tier), _colder(group.tier)
    eligible = [i for i in group.items if _movable(i, dst, rules)]
    chosen: dict[str, str] = {}
    for item in eligible:
        if _expired(item, now):
            continue  # the expire job deletes it; only capacity eviction moves it
        if tr.idle is not None and now - item.last_accessed_at >= tr.idle:
            idle = now - item.last_accessed_at
            chosen[item.id] = f"idle {human(idle)} >= {human(tr.idle)}"
        elif tr.age is not None and now - item.inserted_at >= tr.age:
            chosen[item.id] = (
                f"in {group.tier} for {human(now - item.inserted_at)} >= {human(tr.age)}"
            )
    notes: list[str] = []
    extra_items, extra_bytes, over = _overflow(group, tr, chosen, fill)
    if over:
        where = f"{group.namespace}/{group.kind} in {group.tier}"
        if tr.on_full == "evict":
            pool = [i for i in eligible if i.id not in chosen]
            chosen.update(_evict(pool, tr.evict, now, (extra_items, extra_bytes), over))
        else:
            notes.append(f"{where} is over capacity ({over}); on_full={tr.on_full}: not evicting")
    actions = [
        Action(
            id=id_, namespace=group.namespace, action="move", src=group.tier, dst=dst, reason=why
        )
        for id_, why in chosen.items()
    ]
    return actions, notes


def _overflow(
    group: Group, tr: TierRules, chosen: dict[str, str], fill: float
) -> tuple[int, int, str]:
    """Items and bytes to free once `chosen` leave, and a description ('' if within capacity)."""
    left = [i for i in group.items if i.id not in chosen]
    size = sum(i.size for i in left)
    parts, extra_items, extra_bytes = [], 0, 0
    if tr.capacity is not None and len(left) > tr.capacity:
        parts.append(f"{len(left)}/{tr.capacity} items")
        extra_items = len(left) - int(tr.capacity * fill)
    if tr.max_bytes is not None and size > tr.max_bytes:
        parts.append(f"{size}/{tr.max_bytes} bytes")
        extra_bytes = size - int(tr.max_bytes * fill)
    return extra_items, extra_bytes, ", ".join(parts)


def _evict(
    pool: list[ItemStats], evict: Sequence[str], now: datetime, need: tuple[int, int], over: str
) -> dict[str, str]:
    """Victims from `pool`, selectors in order, until `need` (items, bytes) is met."""
    need_items, need_bytes = need
    size = {i.id: i.size for i in pool}
    out: dict[str, str] = {}
    for name in evict:
        left = [i for i in pool if i.id not in out]
        for id_ in selectors.resolve(name)(left, now, len(left)):
            if need_items <= 0 and need_bytes <= 0:
                return out
            out[id_] = f"over capacity ({over}); picked by {name}"
            need_items, need_bytes = need_items - 1, need_bytes - size[id_]
    return out


def plan_demote(
    groups: Iterable[Group], policy: Policy, now: datetime
) -> tuple[list[Action], list[str]]:
    """Demotions across groups (see module doc)."""
    actions: list[Action] = []
    notes: list[str] = []
    for group in groups:
        a, n = demote_group(group, policy, now)
        actions += a
        notes += n
    return actions, notes


def plan_promote(
    candidates: Sequence[tuple[TierName, ItemStats]], policy: Policy, now: datetime
) -> list[Action]:
    """Promotions of memories (in l2/l3) with enough hits in their kind's window."""
    actions = []
    for tier, item in candidates:
        rules = policy.for_kind(item.kind).promote
        if tier == "l1" or rules is None or _expired(item, now) or item.superseded:
            continue
        recent = [t for t in item.recent_hits if now - rules.window < t <= now]
        if len(recent) >= rules.hits:
            why = f"{len(recent)} hits within {human(rules.window)} (>= {rules.hits})"
            actions.append(
                Action(id=item.id, namespace=item.namespace, action="move", src=tier,
                       dst=_hotter(tier), reason=why)
            )  # fmt: skip
    return actions


def plan_expire(groups: Iterable[Group], policy: Policy, now: datetime) -> list[Action]:
    """Deletions: expired memories anywhere, and l3 memories past retention."""
    actions = []
    for group in groups:
        retain = policy.for_kind(group.kind).l3.retain if group.tier == "l3" else None
        for item in group.items:
            if _expired(item, now):
                assert item.expires_at is not None
                why = f"expired at {item.expires_at.isoformat(timespec='seconds')}"
            elif retain is not None and not item.pinned and now - item.inserted_at >= retain:
                why = f"in l3 for {human(now - item.inserted_at)} >= retain {human(retain)}"
            else:
                continue
            actions.append(
                Action(id=item.id, namespace=group.namespace, action="delete", src=group.tier,
                       reason=why)
            )  # fmt: skip
    return actions
