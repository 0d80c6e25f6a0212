"""Capacity at write time: which new memories fit, per the policy's `on_full`.

- ``reject``: items beyond a (namespace, kind) tier's capacity fail with
  `CapacityError` (the others are written);
- ``warn``: everything is written, and a warning is logged;
- ``evict``: everything is written; groups now over capacity are returned so
  the engine demotes their excess at once (down to `EVICT_TO` of capacity,
  so a full namespace does not pay a scan on every add).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tiermem.errors import CapacityError, TierMemError
from tiermem.lifecycle.policy import Policy
from tiermem.model import MemoryIn, TierName

EVICT_TO = 0.9
log = logging.getLogger("tiermem.capacity")
Counter = Callable[[TierName, str, str], int]  # (tier, namespace, kind) -> count


@dataclass
class Admission:
    """Indexes of items to write, errors by index, and groups to evict now."""

    admitted: list[int] = field(default_factory=list)
    errors: dict[int, TierMemError] = field(default_factory=dict)
    evict: list[tuple[TierName, str, str]] = field(default_factory=list)


def admit(items: Sequence[MemoryIn], policy: Policy, count: Counter) -> Admission:
    """Decide which `items` fit in their placement tier."""
    out = Admission()
    groups: dict[tuple[TierName, str, str], list[int]] = {}
    for i, item in enumerate(items):
        place = policy.for_kind(item.kind).place
        groups.setdefault((place, item.namespace, item.kind), []).append(i)
    for (tier, ns, kind), idx in groups.items():
        rules = policy.for_kind(kind)
        tr = rules.l1 if tier == "l1" else rules.l2
        if tier == "l3" or tr.capacity is None:
            out.admitted += idx
            continue
        have = count(tier, ns, kind)
        room = max(0, tr.capacity - have)
        where = f"{ns}/{kind} in {tier}"
        if tr.on_full == "reject" and len(idx) > room:
            out.admitted += idx[:room]
            for i in idx[room:]:
                out.errors[i] = CapacityError(
                    f"{where} is full ({have}/{tr.capacity}); its policy says on_full: reject. "
                    "Free space (delete, demote) or raise the capacity."
                )
            continue
        out.admitted += idx
        if have + len(idx) > tr.capacity:
            if tr.on_full == "warn":
                log.warning("%s over capacity: %d/%d", where, have + len(idx), tr.capacity)
            elif tr.on_full == "evict":
                out.evict.append((tier, ns, kind))
    out.admitted.sort()
    return out
