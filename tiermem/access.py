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


class HitLog:
    """id -> its last `KEPT` access times (µs), oldest first.

    Each id's times are a plain list, not a ``deque(maxlen=KEPT)``: an empty deque
    alone is 760 B and the log keeps every L2/L3 memory ever read, while most
    hold a hit or two (a list of one: 64 B; the ids of one call share their
    time's int). 20,000 searches of a 100k-memory L2 put 85,729 ids in the log:
    the process grew 75.9 MB with deques, 25.7 MB with lists (perf-log, ninth pass).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._hits: dict[str, list[int]] = {}
        if path is not None and path.exists():
            with ipc.open_file(path) as reader:
                table = reader.read_all()
            for id_, hits in zip(table["id"].to_pylist(), table["hits"].to_pylist(), strict=True):
                self._hits[id_] = hits[-KEPT:]

    def record(self, ids: Iterable[str], at_us: int) -> None:
        for id_ in ids:
            hits = self._hits.get(id_)
            if hits is None:  # not setdefault: that builds a list on every hit
                self._hits[id_] = [at_us]
            else:
                hits.append(at_us)
                if len(hits) > KEPT:
                    del hits[0]

    def get(self, ids: Sequence[str]) -> dict[str, list[int]]:
        return {i: list(self._hits[i]) for i in ids if i in self._hits}

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
                "hits": pa.array(list(self._hits.values()), pa.list_(pa.int64())),
            }
        )
        tmp = self.path.with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
