"""Planners: pure functions from stats snapshots, a policy and a clock to a Plan.

Nothing here reads a tier or the wall clock; the engine builds snapshots
(`Group`s) and applies the returned actions through the one executor.
Every action carries a reason a person can read.

Rules (POLICY.md):
- demote: from l1/l2 one tier colder when idle (``now - last_accessed_at
  >= idle``), aged (``now - inserted_at >= age``), or over capacity (items
  or bytes; victims picked by the tier's ``evict`` selectors in order);
- promote: one tier hotter after ``hits`` accesses within ``window``; and,
  with ``on_read: n``, L2 -> L1 at the read that makes n (`plan_promote_on_read`);
- expire: delete when ``expires_at <= now``, or after ``retain`` in l3.
Pinned memories are never moved colder by a rule; a kind's ``pin:`` keeps
its current (not superseded) memories at that tier or hotter.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tiermem.lifecycle import selectors
from tiermem.lifecycle.planned import Moves, Planned
from tiermem.lifecycle.policy import KindPolicy, Policy, TierRules
from tiermem.lifecycle.stats import ItemStats, StatsColumns
from tiermem.model import TIERS, Action, TierName


@dataclass(frozen=True)
class Group:
    """The stats of one kind in one namespace in one tier."""

    tier: TierName
    namespace: str
    kind: str
    items: Sequence[ItemStats]  # a tuple, or `StatsColumns` from a snapshot


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
    return _below_pin(dst, rules) or item.superseded


def _below_pin(dst: TierName, rules: KindPolicy) -> bool:
    """Whether the kind's `pin:` allows its current memories into `dst`."""
    pin = rules.pin
    return pin is None or TIERS.index(dst) <= TIERS.index(pin)


def _rules(rules: KindPolicy, tier: TierName) -> TierRules:
    return rules.l1 if tier == "l1" else rules.l2


def demote_group(
    group: Group,
    policy: Policy,
    now: datetime,
    fill: float = 1.0,
    keep: Collection[str] = (),
) -> tuple[list[Action], list[str]]:
    """Demotions of one group, and notes (warnings) about it.

    Over capacity, victims are picked until the group is at `fill` of it.
    Ids in `keep` are left where they are, as if pinned (a user's promotion).
    """
    moves, notes = demote_moves(group, policy, now, fill, keep)
    return list(moves), notes


def demote_moves(
    group: Group,
    policy: Policy,
    now: datetime,
    fill: float = 1.0,
    keep: Collection[str] = (),
) -> tuple[Moves, list[str]]:
    """`demote_group`, its actions as columns (`Moves`).

    Rules are decided over the group's columns (`StatsColumns`); only an
    eviction's pool becomes `ItemStats` for the selectors.
    """
    if group.tier == "l3":
        return Moves(group.namespace, group.tier, group.tier, [], []), []
    rules = policy.for_kind(group.kind)
    tr, dst = _rules(rules, group.tier), _colder(group.tier)
    cols = StatsColumns.of(group.items)
    eligible = _eligible(cols, _below_pin(dst, rules))
    if keep:
        eligible = [i for i in eligible if cols.id[i] not in keep]
    chosen = _by_rule(cols, eligible, tr, group.tier, now)
    notes: list[str] = []
    extra_items, extra_bytes, over = _overflow(cols, tr, chosen, fill)
    if over:
        where = f"{group.namespace}/{group.kind} in {group.tier}"
        if tr.on_full == "evict":
            pool = [cols[i] for i in eligible if cols.id[i] not in chosen]
            chosen.update(_evict(pool, tr.evict, now, (extra_items, extra_bytes), over))
        else:
            notes.append(f"{where} is over capacity ({over}); on_full={tr.on_full}: not evicting")
    return Moves(group.namespace, group.tier, dst, list(chosen), list(chosen.values())), notes


def _eligible(cols: StatsColumns, below_pin: bool) -> list[int]:
    """Positions of the items a rule may move colder (`_movable`, column-wise)."""
    if below_pin:
        return [i for i, pinned in enumerate(cols.pinned) if not pinned]
    flags = zip(cols.pinned, cols.superseded, strict=True)
    return [i for i, (pinned, sup) in enumerate(flags) if not pinned and sup]


def _by_rule(
    cols: StatsColumns, eligible: list[int], tr: TierRules, tier: TierName, now: datetime
) -> dict[str, str]:
    """id -> reason of the eligible items that are idle, else aged (expired ones are
    left to the expire job; only capacity eviction moves them)."""
    idle_cut, age_cut = _cut(now, tr.idle), _cut(now, tr.age)
    if idle_cut is None and age_cut is None:
        return {}
    ids, last, inserted, expires = cols.id, cols.last_accessed_at, cols.inserted_at, cols.expires_at
    idle_limit = human(tr.idle) if tr.idle is not None else ""
    age_limit = human(tr.age) if tr.age is not None else ""
    idle_why = _Reasons(lambda d: f"idle {human(d)} >= {idle_limit}")
    age_why = _Reasons(lambda d: f"in {tier} for {human(d)} >= {age_limit}")
    chosen: dict[str, str] = {}
    for i in eligible:
        exp = expires[i]
        if exp is not None and exp <= now:
            continue
        # `now - t >= limit` as `t <= now - limit`: one comparison, no timedelta per item
        if idle_cut is not None and last[i] <= idle_cut:
            chosen[ids[i]] = idle_why(now - last[i])
        elif age_cut is not None and inserted[i] <= age_cut:
            chosen[ids[i]] = age_why(now - inserted[i])
    return chosen


def _cut(now: datetime, limit: timedelta | None) -> datetime | None:
    """`now - limit`, the latest time that is at least `limit` ago; None when there is
    no rule, or when that reaches before year 1 (no stored time is that old)."""
    if limit is None:
        return None
    try:
        return now - limit
    except OverflowError:
        return None


class _Reasons:
    """A reason per whole second of a duration, memoised: items moved together
    share a few distinct durations, and `human` formats each once."""

    def __init__(self, make: Callable[[timedelta], str]) -> None:
        self.make = make
        self.memo: dict[int, str] = {}

    def __call__(self, delta: timedelta) -> str:
        secs = delta.days * 86_400 + delta.seconds  # = int(total_seconds()) for delta >= 0
        why = self.memo.get(secs)
        if why is None:
            why = self.memo[secs] = self.make(timedelta(seconds=secs))
        return why


def _overflow(
    cols: StatsColumns, tr: TierRules, chosen: dict[str, str], fill: float
) -> tuple[int, int, str]:
    """Items and bytes to free once `chosen` leave, and a description ('' if within capacity)."""
    if tr.capacity is None and tr.max_bytes is None:
        return 0, 0, ""
    left = [i for i, id_ in enumerate(cols.id) if id_ not in chosen]
    size = sum(cols.size[i] for i in left)
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
    planned, notes = plan_demote_moves(groups, policy, now)
    return list(planned), notes


def plan_demote_moves(
    groups: Iterable[Group], policy: Policy, now: datetime
) -> tuple[Planned, list[str]]:
    """`plan_demote`, its actions as columns (`Planned`)."""
    parts: list[Moves] = []
    notes: list[str] = []
    for group in groups:
        moves, more = demote_moves(group, policy, now)
        if moves:
            parts.append(moves)
        notes += more
    return Planned(parts), notes


def plan_promote(
    candidates: Sequence[tuple[TierName, ItemStats]], policy: Policy, now: datetime
) -> list[Action]:
    """Promotions of memories (in l2/l3) with enough hits in their kind's window."""
    actions = []
    for tier, item in candidates:
        rules = policy.for_kind(item.kind).promote
        if tier != "l1" and rules is not None:
            action = _promotion(tier, item, rules.hits, rules.window, now)
            actions += [action] if action else []
    return actions


def plan_promote_on_read(
    read: Sequence[tuple[TierName, ItemStats]], policy: Policy, now: datetime
) -> list[Action]:
    """The read-through promotions due at a read of these memories: L2 -> L1 for
    kinds whose ``promote.on_read`` hits (this read's included) fall in ``window``.
    L3 reads are left to the promote job (L3 is written in batches)."""
    actions = []
    for tier, item in read:
        rules = policy.for_kind(item.kind).promote
        if tier == "l2" and rules is not None and rules.on_read is not None:
            action = _promotion(tier, item, rules.on_read, rules.window, now, "on_read ")
            actions += [action] if action else []
    return actions


def _promotion(
    tier: TierName, item: ItemStats, hits: int, window: timedelta, now: datetime, rule: str = ""
) -> Action | None:
    """One tier up if `item` has `hits` hits within `window` (not expired or superseded)."""
    if _expired(item, now) or item.superseded:
        return None
    recent = [t for t in item.recent_hits if now - window < t <= now]
    if len(recent) < hits:
        return None
    why = f"{len(recent)} hits within {human(window)} (>= {rule}{hits})"
    return Action(
        id=item.id, namespace=item.namespace, action="move", src=tier, dst=_hotter(tier), reason=why
    )


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
