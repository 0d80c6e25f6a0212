"""Building the stats snapshots that planners read, from the tiers.

L1 is read field by field (the light fields only: no text, no vectors),
L2 scanned (in-memory Arrow), L3 read through DuckDB with only the light
columns. Recent hits come from Redis for L1 and the writer's HitLog for
L2/L3.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tiermem import schema as sch
from tiermem.access import HitLog
from tiermem.ids import from_us
from tiermem.lifecycle.planners import Group
from tiermem.lifecycle.policy import Policy
from tiermem.lifecycle.stats import ItemStats, StatsColumns, Unread
from tiermem.model import Memory, TierName
from tiermem.tiers import hot_codec as codec
from tiermem.tiers.cold import ColdTier
from tiermem.tiers.hot import HotTier
from tiermem.tiers.warm import WarmTier

LIGHT = codec.LIGHT
Passes = Mapping[tuple[str, str, str], datetime]
"""When demote last passed over each (tier, namespace, kind) group (`ItemStats.passed_at`)."""


def _columns(table: pa.Table) -> tuple[dict[str, list[Any]], list[int]]:
    """The LIGHT columns of a tier's rows as Python values, and text + metadata bytes."""
    cols = {
        c: sch.datetimes(table[c]) if pa.types.is_timestamp(table[c].type) else table[c].to_pylist()
        for c in LIGHT
    }
    size = pc.add(pc.binary_length(table["text"]), pc.binary_length(table["metadata"]))
    return cols, size.to_pylist()


def _hit_times(ids: list[str], hits: dict[str, list[int]]) -> list[tuple[datetime, ...]]:
    """Each id's recent hits (µs) as datetimes; most ids have none."""
    if not hits:
        return [()] * len(ids)
    return [tuple(from_us(t) for t in h) if (h := hits.get(i)) else () for i in ids]


def _stats(
    tier: TierName,
    cols: dict[str, list[Any]],
    sizes: list[int],
    dim: int,
    hits: dict[str, list[int]],
    passes: Passes | None = None,
) -> StatsColumns:
    """The rows (LIGHT columns, text + metadata bytes) as `StatsColumns`, in order."""
    ids, nss, kinds = cols["id"], cols["namespace"], cols["kind"]
    passed: list[datetime | None] = (
        [passes.get((tier, ns, kind)) for ns, kind in zip(nss, kinds, strict=True)]
        if passes
        else [None] * len(ids)
    )
    return StatsColumns(
        id=ids,
        namespace=nss,
        kind=kinds,
        created_at=cols["created_at"],
        inserted_at=cols["tiered_at"],
        last_accessed_at=cols["last_accessed_at"],
        access_count=cols["access_count"],
        recent_hits=_hit_times(ids, hits),
        importance=cols["importance"],
        expires_at=cols["expires_at"],
        pinned=cols["pinned"],
        size=[int(extra) + 4 * dim for extra in sizes],
        superseded=[sup is not None for sup in cols["superseded_by"]],
        passed_at=passed,
    )


def _grouped(tier: TierName, stats: StatsColumns) -> list[Group]:
    """One `Group` per (namespace, kind), sorted; rows keep their order within one."""
    rows: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(stats.namespace, stats.kind, strict=True)):
        rows.setdefault(key, []).append(i)
    if len(rows) == 1:  # the usual case for one namespace: no copy
        ((ns, kind),) = rows
        return [Group(tier, ns, kind, stats)]
    return [Group(tier, ns, kind, stats.take(at)) for (ns, kind), at in sorted(rows.items())]


def _table_stats(
    tier: TierName,
    tables: Iterable[pa.Table],
    dim: int,
    hits: HitLog,
    passes: Passes | None,
) -> StatsColumns:
    """Stats of the rows of Arrow `tables`, with recent hits from `hits`."""
    cols: dict[str, list[Any]] = {c: [] for c in LIGHT}
    sizes: list[int] = []
    for table in tables:
        part, part_sizes = _columns(table)
        for name, values in part.items():
            cols[name] += values
        sizes += part_sizes
    return _stats(tier, cols, sizes, dim, hits.get(cols["id"]), passes)


def hot_groups(
    l1: HotTier,
    dim: int,
    namespaces: Iterable[str] | None = None,
    passes: Passes | None = None,
    policy: Policy | None = None,
) -> list[Group]:
    """L1 groups from the light fields and recent hits in Redis (no text, no vectors).

    With the `policy` a demote plans by, a namespace holding only kinds
    without capacity limits in L1 is read for the idle and age rules only
    (`codec.DECIDE`; the other stats `Unread`): no selector will look at it.
    """
    out: list[Group] = []
    nss = sorted(namespaces if namespaces is not None else l1.namespaces())
    decide = set() if policy is None else _unbounded(l1, nss, policy)
    for ns, cols, sizes, hits in l1.lights(nss, decide):
        if sizes is None and any(_bounded(policy, k) for k in set(cols["kind"])):
            cols, sizes, hits = l1.light(ns)  # a kind its kind indexes missed: read it all
        if sizes is None:
            out += _grouped("l1", _decide_stats(ns, cols, passes))
        else:
            out += _grouped("l1", _stats("l1", cols, sizes, dim, hits, passes))
    return out


def _bounded(policy: Policy | None, kind: str) -> bool:
    """Whether `kind` has a capacity in L1 (a demote may then ask its selectors)."""
    rules = policy.for_kind(kind).l1 if policy is not None else None
    return rules is None or rules.capacity is not None or rules.max_bytes is not None


def _unbounded(l1: HotTier, namespaces: list[str], policy: Policy) -> set[str]:
    """The namespaces whose kinds (by L1's kind indexes) all lack a capacity."""
    kinds = l1.kinds(namespaces)
    return {ns for ns in namespaces if not any(_bounded(policy, k) for k in kinds[ns])}


def _decide_stats(ns: str, cols: dict[str, list[Any]], passes: Passes | None) -> StatsColumns:
    """`codec.DECIDE` columns of namespace `ns` as stats; the rest `Unread`."""
    ids, kinds, n = cols["id"], cols["kind"], len(cols["id"])
    passes = passes or {}
    return StatsColumns(
        id=ids,
        namespace=[ns] * n,
        kind=kinds,
        created_at=Unread(n, "created_at"),
        inserted_at=cols["tiered_at"],
        last_accessed_at=cols["last_accessed_at"],
        access_count=Unread(n, "access_count"),
        recent_hits=Unread(n, "recent_hits"),
        importance=Unread(n, "importance"),
        expires_at=cols["expires_at"],
        pinned=cols["pinned"],
        size=Unread(n, "size"),
        superseded=[sup is not None for sup in cols["superseded_by"]],
        passed_at=[passes.get(("l1", ns, k)) for k in kinds] if passes else [None] * n,
    )


def warm_groups(l2: WarmTier, dim: int, hits: HitLog, passes: Passes | None = None) -> list[Group]:
    """L2 groups, with recent hits from the writer's HitLog."""
    out: list[Group] = []
    for ns in sorted(l2.namespaces()):
        out += _grouped("l2", _table_stats("l2", l2.scan(ns), dim, hits, passes))
    return out


def cold_groups(l3: ColdTier, dim: int, hits: HitLog) -> list[Group]:
    """L3 groups from the light columns only (DuckDB; vectors never read)."""
    table = l3.columns([*LIGHT, "text", "metadata"])
    if table is None:
        return []
    return _grouped("l3", _table_stats("l3", [table], dim, hits, None))


def read_stats(memories: Sequence[Memory], hits: HitLog) -> list[tuple[TierName, ItemStats]]:
    """What the promote rule sees of memories just read (a read's own hit
    already recorded), with the tier each was read from."""
    ids = [m.id for m in memories]
    times = _hit_times(ids, hits.get(ids))
    return [(m.tier, _read_stats(m, t)) for m, t in zip(memories, times, strict=True)]


def _read_stats(m: Memory, recent_hits: tuple[datetime, ...]) -> ItemStats:
    return ItemStats(
        id=m.id,
        namespace=m.namespace,
        kind=m.kind,
        created_at=m.created_at,
        inserted_at=m.tiered_at or m.created_at,
        last_accessed_at=m.last_accessed_at,
        access_count=m.access_count,
        recent_hits=recent_hits,
        importance=m.importance,
        expires_at=m.expires_at,
        pinned=m.pinned,
        superseded=m.superseded_by is not None,
    )


def promote_candidates(
    l2: WarmTier, l3: ColdTier, dim: int, hits: HitLog, now: datetime
) -> list[tuple[TierName, ItemStats]]:
    """Memories in L2/L3 that have recent hits, with their stats."""
    del now  # windows are applied by the planner
    ids = hits.ids()
    out: list[tuple[TierName, ItemStats]] = []
    found: set[str] = set()
    pairs: tuple[tuple[TierName, WarmTier | ColdTier], ...] = (("l2", l2), ("l3", l3))
    for name, tier in pairs:
        todo = [i for i in ids if i not in found]
        if not todo:
            break
        for item in _table_stats(name, [tier.get(todo)], dim, hits, None):
            out.append((name, item))
            found.add(item.id)
    return out
