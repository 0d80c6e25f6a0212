"""Building the stats snapshots that planners read, from the tiers.

L1 is read field by field (the light fields only: no text, no vectors),
L2 scanned (in-memory Arrow), L3 read through DuckDB with only the light
columns. Recent hits come from Redis for L1 and the writer's HitLog for
L2/L3.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tiermem import schema as sch
from tiermem.access import HitLog
from tiermem.ids import from_us
from tiermem.lifecycle.planners import Group
from tiermem.lifecycle.stats import ItemStats
from tiermem.model import TierName
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


def _items(
    tier: TierName,
    cols: dict[str, list[Any]],
    sizes: list[int],
    dim: int,
    hits: dict[str, list[int]],
    passes: Passes | None = None,
) -> Iterator[ItemStats]:
    passes = passes or {}
    # one zip over the columns, not a dict lookup and an index per field and item
    names = ("id", "namespace", "kind", "created_at", "tiered_at", "last_accessed_at")
    more = ("access_count", "importance", "expires_at", "pinned", "superseded_by")
    rows = zip(*(cols[n] for n in (*names, *more)), sizes, strict=True)
    for id_, ns, kind, created, tiered, last, count, imp, exp, pinned, sup, extra in rows:
        recent = hits.get(id_)
        yield ItemStats(
            id=id_,
            namespace=ns,
            kind=kind,
            created_at=created,
            inserted_at=tiered,
            last_accessed_at=last,
            access_count=count,
            recent_hits=tuple(from_us(t) for t in recent) if recent else (),
            importance=imp,
            expires_at=exp,
            pinned=pinned,
            size=int(extra) + 4 * dim,
            superseded=sup is not None,
            passed_at=passes.get((tier, ns, kind)),
        )


def _table_items(
    tier: TierName, table: pa.Table, dim: int, hits: dict[str, list[int]], passes: Passes | None
) -> Iterator[ItemStats]:
    cols, sizes = _columns(table)
    return _items(tier, cols, sizes, dim, hits, passes)


def _grouped(tier: TierName, items: Iterable[ItemStats]) -> list[Group]:
    by_key: dict[tuple[str, str], list[ItemStats]] = {}
    for item in items:
        by_key.setdefault((item.namespace, item.kind), []).append(item)
    return [Group(tier, ns, kind, tuple(v)) for (ns, kind), v in sorted(by_key.items())]


def hot_groups(
    l1: HotTier, dim: int, namespaces: Iterable[str] | None = None, passes: Passes | None = None
) -> list[Group]:
    """L1 groups from the light fields and recent hits in Redis (no text, no vectors)."""
    out: list[Group] = []
    for ns in sorted(namespaces if namespaces is not None else l1.namespaces()):
        cols, sizes, hits = l1.light(ns)
        out += _grouped("l1", _items("l1", cols, sizes, dim, hits, passes))
    return out


def warm_groups(l2: WarmTier, dim: int, hits: HitLog, passes: Passes | None = None) -> list[Group]:
    """L2 groups, with recent hits from the writer's HitLog."""
    out: list[Group] = []
    for ns in sorted(l2.namespaces()):
        tables = list(l2.scan(ns))
        ids = [i for t in tables for i in t["id"].to_pylist()]
        recent = hits.get(ids)
        items = (s for t in tables for s in _table_items("l2", t, dim, recent, passes))
        out += _grouped("l2", items)
    return out


def cold_groups(l3: ColdTier, dim: int, hits: HitLog) -> list[Group]:
    """L3 groups from the light columns only (DuckDB; vectors never read)."""
    table = l3.columns([*LIGHT, "text", "metadata"])
    if table is None:
        return []
    ids = table["id"].to_pylist()
    return _grouped("l3", _table_items("l3", table, dim, hits.get(ids), None))


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
        table = tier.get(todo)
        recent = hits.get(table["id"].to_pylist())
        for item in _table_items(name, table, dim, recent, None):
            out.append((name, item))
            found.add(item.id)
    return out
