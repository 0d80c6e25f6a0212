"""What lifecycle rules see of a memory: a snapshot of its stats.

Selectors and planners are pure functions of these snapshots and a clock;
they never read a tier. Times are aware UTC datetimes.

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 1, 1, tzinfo=UTC)
>>> s = ItemStats(id="a", namespace="n", kind="episodic", created_at=t, inserted_at=t,
...               last_accessed_at=t, access_count=0)
>>> s.pinned, s.recent_hits
(False, ())
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, overload


@dataclass(frozen=True, slots=True)
class ItemStats:
    """One memory's stats in one tier, as of a snapshot."""

    id: str
    namespace: str
    kind: str
    created_at: datetime
    inserted_at: datetime  # when it entered its current tier (FIFO order)
    last_accessed_at: datetime
    access_count: int
    recent_hits: tuple[datetime, ...] = ()  # access times within the tracking window, oldest first
    importance: float = 0.5
    expires_at: datetime | None = None
    pinned: bool = False
    size: int = 0  # approximate stored bytes
    superseded: bool = False  # has superseded_by (an old fact or procedure version)
    # The previous eviction pass over this item's group: SIEVE's visited bit
    # and S3-FIFO's counter count only hits after it (the pass cleared them).
    passed_at: datetime | None = None


_FIELDS = tuple(f.name for f in fields(ItemStats))


class Unread(Sequence[Any]):
    """A column a snapshot did not read (`n` values of field `name`): reading any
    value raises, so stats missing it can never pass for real ones."""

    def __init__(self, n: int, name: str) -> None:
        self.n, self.name = n, name

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        raise LookupError(f"ItemStats.{self.name} was not read for this snapshot")

    def __iter__(self) -> Iterator[Any]:
        return self[0]  # type: ignore[no-any-return]  # raises

    def take(self, rows: Sequence[int]) -> Unread:
        return Unread(len(rows), self.name)


@dataclass(frozen=True, eq=False)
class StatsColumns(Sequence[ItemStats]):
    """Many memories' stats column by column (one list per `ItemStats` field, same
    names and order): what snapshots hand the planners.

    A demote pass decides idle and age rules over these lists; an `ItemStats`
    is built only for an item a selector has to see (capacity eviction), or
    when someone iterates. Building one per memory was a tenth of a large
    L1 demote.
    """

    id: Sequence[str]
    namespace: Sequence[str]
    kind: Sequence[str]
    created_at: Sequence[datetime]
    inserted_at: Sequence[datetime]
    last_accessed_at: Sequence[datetime]
    access_count: Sequence[int]
    recent_hits: Sequence[tuple[datetime, ...]]
    importance: Sequence[float]
    expires_at: Sequence[datetime | None]
    pinned: Sequence[bool]
    size: Sequence[int]
    superseded: Sequence[bool]
    passed_at: Sequence[datetime | None]

    @classmethod
    def of(cls, items: Sequence[ItemStats]) -> StatsColumns:
        """`items` as columns (themselves if they are columns already)."""
        if isinstance(items, StatsColumns):
            return items
        return cls(*([getattr(i, name) for i in items] for name in _FIELDS))

    def columns(self) -> tuple[Sequence[Any], ...]:
        """The lists, in `ItemStats` field order."""
        return tuple(getattr(self, name) for name in _FIELDS)

    def take(self, rows: Sequence[int]) -> StatsColumns:
        """The rows at these positions, in this order."""
        return StatsColumns(*(_take(col, rows) for col in self.columns()))

    def __len__(self) -> int:
        return len(self.id)

    @overload
    def __getitem__(self, i: int) -> ItemStats: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[ItemStats, ...]: ...

    def __getitem__(self, i: int | slice) -> ItemStats | tuple[ItemStats, ...]:
        if isinstance(i, slice):
            return tuple(self.take(range(len(self))[i]))
        return ItemStats(*(col[i] for col in self.columns()))

    def __iter__(self) -> Iterator[ItemStats]:
        return (ItemStats(*row) for row in zip(*self.columns(), strict=True))


def _take(col: Sequence[Any], rows: Sequence[int]) -> Sequence[Any]:
    return col.take(rows) if isinstance(col, Unread) else [col[i] for i in rows]
