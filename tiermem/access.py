"""Recent hits of L2/L3 memories, for the promotion window.

L1 keeps each record's last hits in Redis (atomic, shared by processes:
see tiers/hot.py). L2 and L3 live in the writer process, so their hits are
kept here, in memory, and persisted at checkpoint and close with an atomic
write: a crash loses the hits since the last checkpoint (promotion is then
merely later). Only the writer records hits for L2/L3.

>>> log = HitLog(None)
>>> log.record(["a", "a"], 10); log.record(["a"], 20)
>>> log.get(["a", "b"])
{'a': [10, 10, 20]}
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

KEPT = 16  # hits kept per memory: promotion thresholds above this cannot be expressed


Times = int | tuple[int, ...]  # one hit as a bare int, more as a tuple


class HitLog:
    """id -> its last `KEPT` access times (µs), oldest first.

    Kept compactly, because the log holds every L2/L3 memory ever read and most
    hold a hit or two: one hit is a bare int (the ids of one call share it),
    more a tuple of exactly their size. In the memory suite's 20,000 searches
    (85,854 ids, 31% with one hit, 31% with two) the times took 6.0 MB, 10.2 MB
    as lists; a ``deque(maxlen=KEPT)`` alone is 760 B even empty (perf-log,
    ninth and tenth passes).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._hits: dict[str, Times] = {}
        if path is not None and path.exists():
            with ipc.open_file(path) as reader:
                table = reader.read_all()
            for id_, hits in zip(table["id"].to_pylist(), table["hits"].to_pylist(), strict=True):
                if hits:
                    self._hits[id_] = hits[-1] if len(hits) == 1 else tuple(hits[-KEPT:])

    def record(self, ids: Iterable[str], at_us: int) -> None:
        for id_ in ids:
            hits = self._hits.get(id_)
            if hits is None:
                self._hits[id_] = at_us
            elif isinstance(hits, int):
                self._hits[id_] = (hits, at_us)
            else:
                self._hits[id_] = (hits if len(hits) < KEPT else hits[1:]) + (at_us,)

    def get(self, ids: Sequence[str]) -> dict[str, list[int]]:
        return {i: _listed(h) for i in ids if (h := self._hits.get(i)) is not None}

    def ids(self) -> list[str]:
        return list(self._hits)

    def drop(self, ids: Iterable[str]) -> None:
        for id_ in ids:
            self._hits.pop(id_, None)

    def save(self) -> None:
        """Write the log atomically (temp file, fsync, rename)."""
        if self.path is None:
            return
        table = pa.table(
            {
                "id": pa.array(list(self._hits), pa.string()),
                "hits": pa.array(map(_listed, self._hits.values()), pa.list_(pa.int64())),
            }
        )
        tmp = self.path.with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def _listed(hits: Times) -> list[int]:
    """An id's times as a new list."""
    return [hits] if isinstance(hits, int) else list(hits)
