"""Building the stats snapshots that planners read, from the tiers.

L1 and L2 are scanned (both bounded and cheap: Redis hashes, in-memory
Arrow); L3 is read through DuckDB with only the light columns, never the
vectors. Recent hits come from Redis for L1 and the writer's HitLog for
L2/L3.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from tiermem.access import HitLog
from tiermem.ids import from_us
from tiermem.lifecycle.planners import Group
from tiermem.lifecycle.stats import ItemStats
from tiermem.model import TierName
from tiermem.tiers.cold import ColdTier
from tiermem.tiers.hot import HotTier
from tiermem.tiers.warm import WarmTier

LIGHT = (
    "id", "namespace", "kind", "created_at", "tiered_at", "last_accessed_at", "access_count",
    "importance", "expires_at", "pinned", "superseded_by",
)  # fmt: skip


def _items(table: pa.Table, dim: int, hits: dict[str, list[int]]) -> Iterator[ItemStats]:
    size = pc.add(pc.binary_length(table["text"]), pc.binary_length(table["metadata"]))
    cols = {c: table[c].to_pylist() for c in LIGHT}
    for i, extra in enumerate(size.to_pylist()):
        id_ = cols["id"][i]
        yield ItemStats(
            id=id_,
            namespace=cols["namespace"][i],
            kind=cols["kind"][i],
            created_at=cols["created_at"][i],
            inserted_at=cols["tiered_at"][i],
            last_accessed_at=cols["last_accessed_at"][i],
            access_count=cols["access_count"][i],
            recent_hits=tuple(from_us(t) for t in hits.get(id_, ())),
            importance=cols["importance"][i],
            expires_at=cols["expires_at"][i],
            pinned=cols["pinned"][i],
            size=int(extra) + 4 * dim,
            superseded=cols["superseded_by"][i] is not None,
        )


def _grouped(tier: TierName, items: Iterable[ItemStats]) -> list[Group]:
    by_key: dict[tuple[str, str], list[ItemStats]] = {}
    for item in items:
        by_key.setdefault((item.namespace, item.kind), []).append(item)
    return [Group(tier, ns, kind, tuple(v)) for (ns, kind), v in sorted(by_key.items())]


def hot_groups(l1: HotTier, dim: int, namespaces: Iterable[str] | None = None) -> list[Group]:
    """L1 groups, with each record's recent hits from Redis."""
    out: list[Group] = []
    for ns in sorted(namespaces if namespaces is not None else l1.namespaces()):
        tables = list(l1.scan(ns))
        ids = [i for t in tables for i in t["id"].to_pylist()]
        hits = l1.recent_hits(ids)
        out += _grouped("l1", (s for t in tables for s in _items(t, dim, hits)))
    return out


def warm_groups(l2: WarmTier, dim: int, hits: HitLog) -> list[Group]:
    """L2 groups, with recent hits from the writer's HitLog."""
    out: list[Group] = []
    for ns in sorted(l2.namespaces()):
        tables = list(l2.scan(ns))
        ids = [i for t in tables for i in t["id"].to_pylist()]
        out += _grouped("l2", (s for t in tables for s in _items(t, dim, hits.get(ids))))
    return out


def cold_groups(l3: ColdTier, dim: int, hits: HitLog) -> list[Group]:
    """L3 groups from the light columns only (DuckDB; vectors never read)."""
    table = l3.columns([*LIGHT, "text", "metadata"])
    if table is None:
        return []
    ids = table["id"].to_pylist()
    return _grouped("l3", _items(table, dim, hits.get(ids)))


def promote_candidates(
    l2: WarmTier, l3: ColdTier, dim: int, hits: HitLog, now: datetime
) -> list[tuple[TierName, ItemStats]]:
    """Memories in L2/L3 that have recent hits, with their stats."""
    del now  # windows are applied by the planner
    ids = hits.ids()
    out: list[tuple[TierName, ItemStats]] = []
    found: set[str] = set()
    for name, tier in (("l2", l2), ("l3", l3)):
        todo = [i for i in ids if i not in found]
        if not todo:
            break
        table = tier.get(todo)
        for item in _items(table, dim, hits.get(table["id"].to_pylist())):
            out.append((name, item))  # type: ignore[arg-type]
            found.add(item.id)
    return out
