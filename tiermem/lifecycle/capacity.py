"""Capacity at write time: which new memories fit, per the policy's `on_full`.

- ``reject``: items beyond a (namespace, kind) tier's capacity fail with
  `CapacityError` (the others are written);
- ``warn``: everything is written, and a warning is logged;
- ``evict``: everything is written; groups now over capacity are returned so
  the engine demotes their excess at once (down to `EVICT_TO` of capacity,
  so a full namespace does not pay a scan on every add).

`admit` runs before the write and counts only the groups that may refuse
items (``reject``); `overflow` runs after it, on counts the write itself
returned where the tier can (L1: `HotTier.add_new`), so an add to a
``warn``/``evict`` group makes no round trip just to count.

Promotions (the promote job, read-through, a user's ``promote``) are held to
the same rules: `fit` keeps the moves a ``reject`` group has room for before
they run, and `overflowing` names the ``evict`` groups to trim after.
Consolidation's new memories go where `Room.place` finds room.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tiermem.errors import CapacityError, TierMemError
from tiermem.lifecycle.policy import Policy
from tiermem.lifecycle.policy_rules import TierRules
from tiermem.model import TIERS, MemoryIn, TierName

EVICT_TO = 0.9
log = logging.getLogger("tiermem.capacity")
Group = tuple[TierName, str, str]  # (tier, namespace, kind)
Counter = Callable[[TierName, str, str], int]  # (tier, namespace, kind) -> count


@dataclass
class Admission:
    """Indexes of items to write, errors by index, groups to check after the write
    (`watch`: their policy warns or evicts when over) and, once `overflow`
    has run, the groups to evict now."""

    admitted: list[int] = field(default_factory=list)
    errors: dict[int, TierMemError] = field(default_factory=dict)
    watch: list[tuple[TierName, str, str]] = field(default_factory=list)
    evict: list[tuple[TierName, str, str]] = field(default_factory=list)


def admit(items: Sequence[MemoryIn], policy: Policy, count: Counter) -> Admission:
    """Decide which `items` fit in their placement tier (before writing them)."""
    out = Admission()
    groups: dict[tuple[TierName, str, str], list[int]] = {}
    for i, item in enumerate(items):
        place = policy.for_kind(item.kind).place
        groups.setdefault((place, item.namespace, item.kind), []).append(i)
    for (tier, ns, kind), idx in groups.items():
        tr = _rules(policy, tier, kind)
        if tr is None or tr.capacity is None:
            out.admitted += idx
            continue
        if tr.on_full != "reject":
            out.admitted += idx
            out.watch.append((tier, ns, kind))
            continue
        have = count(tier, ns, kind)
        room = max(0, tr.capacity - have)
        out.admitted += idx[:room]
        for i in idx[room:]:
            out.errors[i] = full((tier, ns, kind), have, tr.capacity)
    out.admitted.sort()
    return out


def full(group: Group, have: int, cap: int) -> CapacityError:
    """The error for a write into a full ``on_full: reject`` group."""
    tier, ns, kind = group
    return CapacityError(
        f"{ns}/{kind} in {tier} is full ({have}/{cap}); its policy says "
        "on_full: reject. Free space (delete, demote) or raise the capacity."
    )


def require_room(group: Group, policy: Policy, count: Counter) -> None:
    """Raise `CapacityError` if `group` is full and its policy says ``on_full: reject``."""
    tier, _, kind = group
    tr = _rules(policy, tier, kind)
    if tr is not None and tr.capacity is not None and tr.on_full == "reject":
        have = count(*group)
        if have >= tr.capacity:
            raise full(group, have, tr.capacity)


def overflow(adm: Admission, policy: Policy, count: Counter) -> None:
    """After the write: warn about, or list in `adm.evict`, the watched groups now
    over capacity (`count` gives each group's count after the write)."""
    adm.evict += overflowing(adm.watch, policy, count)


def overflowing(groups: Iterable[Group], policy: Policy, count: Counter) -> list[Group]:
    """Of `groups` just written to, those over capacity whose policy evicts; those
    whose policy warns are logged (`count` gives a group's count now)."""
    out: list[Group] = []
    for tier, ns, kind in groups:
        tr = _rules(policy, tier, kind)
        if tr is None or tr.capacity is None or tr.on_full == "reject":
            continue
        have = count(tier, ns, kind)
        if have <= tr.capacity:
            continue
        if tr.on_full == "warn":
            log.warning("%s/%s in %s over capacity: %d/%d", ns, kind, tier, have, tr.capacity)
        else:
            out.append((tier, ns, kind))
    return out


def fit(dests: Sequence[Group], policy: Policy, count: Counter) -> tuple[list[bool], list[str]]:
    """Which moves into these groups (one per move, in order) fit: into an
    ``on_full: reject`` group only as many as it has room for, the first ones;
    any other move fits (`overflowing` sees to it after). Notes say what was
    held back. Only ``reject`` groups are counted."""
    room = Room(policy, count)
    fits = [room.take(group) for group in dests]
    held: dict[Group, int] = {}
    for group, ok in zip(dests, fits, strict=True):
        if not ok:
            held[group] = held.get(group, 0) + 1
    notes = [
        f"{ns}/{kind} in {tier} is full (on_full: reject): {n} promotion(s) held back"
        for (tier, ns, kind), n in held.items()
    ]
    return fits, notes


class Room:
    """Room left in ``on_full: reject`` groups over one run, each group counted
    once (`take`); and where a run's new memories go (`place`): a kind's place,
    or while that is full, the next colder tier with room (L3 has no capacity).
    `placed_colder` counts the fallbacks."""

    def __init__(self, policy: Policy, count: Counter) -> None:
        self.policy, self.count = policy, count
        self.left: dict[Group, int] = {}
        self.placed_colder: dict[tuple[Group, TierName], int] = {}

    def take(self, group: Group) -> bool:
        """Whether one more memory fits in `group` (then its room is taken); always
        where the group's policy does not reject."""
        tr = _rules(self.policy, group[0], group[2])
        if tr is None or tr.capacity is None or tr.on_full != "reject":
            return True
        if group not in self.left:
            self.left[group] = tr.capacity - self.count(*group)
        if self.left[group] <= 0:
            return False
        self.left[group] -= 1
        return True

    def place(self, tier: TierName, namespace: str, kind: str) -> TierName:
        """The tier a new memory of `kind` meant for `tier` goes to (room taken)."""
        want = tier
        while tier != "l3" and not self.take((tier, namespace, kind)):
            tier = TIERS[TIERS.index(tier) + 1]
        if tier != want:
            key = ((want, namespace, kind), tier)
            self.placed_colder[key] = self.placed_colder.get(key, 0) + 1
        return tier

    def notes(self) -> list[str]:
        """What went colder than its place, per group."""
        return [
            f"{ns}/{kind} in {want} is full (on_full: reject): {n} new memor"
            f"{'y' if n == 1 else 'ies'} placed in {tier}"
            for ((want, ns, kind), tier), n in self.placed_colder.items()
        ]


def _rules(policy: Policy, tier: TierName, kind: str) -> TierRules | None:
    """The capacity rules of `kind` in `tier` (None in L3, which has none)."""
    rules = policy.for_kind(kind)
    return None if tier == "l3" else rules.l1 if tier == "l1" else rules.l2
