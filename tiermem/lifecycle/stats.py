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

from dataclasses import dataclass
from datetime import datetime


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
