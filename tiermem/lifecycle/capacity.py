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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tiermem.errors import CapacityError, TierMemError
from tiermem.lifecycle.policy import Policy
from tiermem.lifecycle.policy_rules import TierRules
from tiermem.model import MemoryIn, TierName

EVICT_TO = 0.9
log = logging.getLogger("tiermem.capacity")
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
            out.errors[i] = CapacityError(
                f"{ns}/{kind} in {tier} is full ({have}/{tr.capacity}); its policy says "
                "on_full: reject. Free space (delete, demote) or raise the capacity."
            )
    out.admitted.sort()
    return out


def overflow(adm: Admission, policy: Policy, count: Counter) -> None:
    """After the write: warn about, or list in `adm.evict`, the watched groups now
    over capacity (`count` gives each group's count after the write)."""
    for tier, ns, kind in adm.watch:
        tr = _rules(policy, tier, kind)
        assert tr is not None and tr.capacity is not None  # as admit found it
        have = count(tier, ns, kind)
        if have <= tr.capacity:
            continue
        if tr.on_full == "warn":
            log.warning("%s/%s in %s over capacity: %d/%d", ns, kind, tier, have, tr.capacity)
        elif tr.on_full == "evict":
            adm.evict.append((tier, ns, kind))


def _rules(policy: Policy, tier: TierName, kind: str) -> TierRules | None:
    """The capacity rules of `kind` in `tier` (None in L3, which has none)."""
    rules = policy.for_kind(kind)
    return None if tier == "l3" else rules.l1 if tier == "l1" else rules.l2
