"""Time-sortable ids (UUIDv7) and the default clock.

>>> a, b = new_id(), new_id()
>>> a < b and len(a) == 36
True
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def utcnow() -> datetime:
    """The default clock: an aware UTC datetime."""
    return datetime.now(UTC)


def new_id(at: datetime | None = None) -> str:
    """A UUIDv7 string: 48-bit ms timestamp, then a 12-bit counter and random bits.

    The counter keeps ids from one process strictly increasing within a
    millisecond, so ids sort in creation order (the L3 manifest prunes on it).
    """
    global _last_ms, _seq
    ms = int((at or utcnow()).timestamp() * 1000)
    with _lock:
        if ms <= _last_ms and at is None:
            ms, _seq = _last_ms, _seq + 1
            if _seq > 0xFFF:  # counter exhausted: borrow the next millisecond
                ms, _seq = ms + 1, 0
        else:
            _seq = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave headroom
        if at is None:
            _last_ms = ms
        seq = _seq
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float)."""
    return (dt - EPOCH) // _US


def from_us(us: int) -> datetime:
    """The aware UTC datetime of a microsecond timestamp."""
    return EPOCH + timedelta(microseconds=us)


# µs -> datetime, shared by every reader: the rows of a result (and of successive
# results) share times (created_at = updated_at until an update, one tiered_at per
# move). Cleared when full rather than LRU: a miss costs ~1 µs, the bookkeeping more.
_DATETIMES: dict[int, datetime] = {}
_DATETIMES_MAX = 1 << 16


def as_datetime(us: int | None) -> datetime | None:
    """`from_us`, memoised (None stays None)."""
    if us is None:
        return None
    dt = _DATETIMES.get(us)
    if dt is None:
        if len(_DATETIMES) >= _DATETIMES_MAX:
            _DATETIMES.clear()
        dt = _DATETIMES[us] = from_us(us)
    return dt
