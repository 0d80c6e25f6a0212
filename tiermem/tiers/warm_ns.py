"""One L2 namespace: its files (segments, tombstones, access stats) and its
in-memory state (Arrow payload by row number, vectors, access stats).

The on-disk format is described in `tiermem.tiers.warm`, loading is in
`warm_load`. Everything here runs under the WarmTier's lock.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import replace
from datetime import UTC
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiermem.filters import Filter
from tiermem.ids import to_us
from tiermem.schema import ACCESS_COLUMNS, TS, chunk_matrices, embedding_array, schema
from tiermem.tiers.found import MemoryReader, RowsFound
from tiermem.tiers.warm_files import (
    append_tombstones,
    detached,
    io_errors,
    write_durably,
    write_ipc,
)
from tiermem.tiers.warm_index import HnswParams, VectorIndex, normalise

TOMBSTONES = "tombstones.log"
ACCESS = "access.arrow"
COMPACTED = b"tiermem.compacted"
SEGMENT_RE = re.compile(r"seg-(\d{8})\.arrow")
NEVER = np.iinfo(np.int64).max  # expires_at of a row without expiry
EMBEDDING = "embedding"
FEW_ROWS = 64  # gathers up to this many rows slice instead of `take`
MERGE_RATIO = 4  # payload parts: see Namespace._merge_tail


class Namespace:
    """In-memory state of one namespace plus the writes to its directory."""

    def __init__(self, name: str, path: Path, params: HnswParams) -> None:
        self.name, self.path, self.params = name, path, params
        self.schema = schema(params.dim)
        # In memory a segment is its payload (every column but the embedding) plus
        # rows of `vec`'s matrix: one copy of each vector, not two (L2 RSS).
        self.payload = self.schema.remove(self.schema.get_field_index(EMBEDDING))
        self.seqs: list[int] = []  # segment files, in seq order
        self.starts: list[int] = []  # first row number of each segment
        # Payload parts: consecutive row ranges, one chunk each, merged as they
        # pile up (`_merge_tail`), so a gather touches a few parts, not one per
        # segment (a namespace fed by many small moves has hundreds).
        self.parts: list[pa.Table] = []
        self.part_starts: list[int] = []
        self.id2row: dict[str, int] = {}  # live ids only
        self.vec = VectorIndex(params)
        self.last_us = np.zeros(0, dtype=np.int64)  # access stats by row number
        self.count = np.zeros(0, dtype=np.int64)
        # Expiry (µs, NEVER when null) and supersession by row number, so the
        # filters every search applies are a numpy compare, and free when no
        # row of the namespace has either set.
        self.exp_us = np.zeros(0, dtype=np.int64)
        self.superseded = np.zeros(0, dtype=bool)
        self.any_exp = self.any_superseded = False
        self.tomb_lines = 0
        self._table: pa.Table | None = None
        self._readers: list[MemoryReader] | None = None  # one per part, built on demand

    # -- in-memory state --------------------------------------------------

    @property
    def table(self) -> pa.Table:
        """The payload of all rows (dead included; no embedding) as one chunked table.

        For whole-column work (masks) only; concatenation is zero-copy. Row
        gathers go through `take`/`take_column`, which read each segment's
        (single-chunk) part.
        """
        if self._table is None:
            self._table = pa.concat_tables([self.payload.empty_table(), *self.parts])
        return self._table

    def append(self, table: pa.Table, seq: int, *, detach: bool = False) -> list[str]:
        """Add a segment's rows; an id seen before loses its older row (later rows win).
        Returns the ids as `id2row` keys them (callers reuse these str objects).

        `detach` copies the payload out of `table`'s buffers: a segment read
        from disk keeps all its columns in one buffer, so keeping any column
        of it would keep its embeddings in memory too. Vectors go into the
        matrix straight from `table`'s chunks. One chunk per part: cheap gathers.
        """
        payload = table.drop_columns([EMBEDDING])
        payload = detached(payload) if detach else payload.combine_chunks()
        self.parts.append(payload)
        self.part_starts.append(self.vec.n)
        self._merge_tail()
        self.seqs.append(seq)
        self.starts.append(self.vec.n)
        self._table, self._readers = None, None
        ids: list[str] = table.column("id").to_pylist()
        old = [self.id2row[i] for i in ids if i in self.id2row]
        rows = self.vec.append(chunk_matrices(table.column(EMBEDDING)))
        if old:
            self.vec.kill(np.asarray(old))
        self.id2row.update(zip(ids, rows.tolist(), strict=True))
        last = table.column("last_accessed_at").cast(pa.int64()).to_numpy()
        count = table.column("access_count").to_numpy()
        self.last_us = np.concatenate([self.last_us, last])
        self.count = np.concatenate([self.count, count])
        exp_col = table.column("expires_at")
        exp = exp_col.cast(pa.int64()).fill_null(NEVER).to_numpy()
        sup = pc.is_valid(table.column("superseded_by")).to_numpy(zero_copy_only=False)
        self.exp_us = np.concatenate([self.exp_us, exp])
        self.superseded = np.concatenate([self.superseded, sup])
        self.any_exp = self.any_exp or exp_col.null_count < len(exp_col)
        self.any_superseded = self.any_superseded or bool(sup.any())
        return ids

    def _merge_tail(self) -> None:
        """Merge the last two parts while the older is at most `MERGE_RATIO` times
        the newer: part sizes then grow geometrically, so there are O(log n)
        parts and each row is copied O(log n) times over all appends."""
        while len(self.parts) >= 2 and (
            self.parts[-2].num_rows <= MERGE_RATIO * self.parts[-1].num_rows
        ):
            last = self.parts.pop()
            self.part_starts.pop()
            self.parts[-1] = detached(pa.concat_tables([self.parts[-1], last]))

    def seq_of(self, row: int) -> int:
        """The seq of the segment holding row number `row`."""
        return self.seqs[bisect.bisect_right(self.starts, row) - 1]

    def rows_of(self, ids: list[str]) -> np.ndarray:
        """Row numbers of the held ids among `ids`."""
        return np.asarray([self.id2row[i] for i in ids if i in self.id2row], dtype=np.int64)

    def _part(self, p: int, column: str | None) -> pa.Table | pa.Array:
        part = self.parts[p] if self.parts else self.payload.empty_table()
        return part if column is None else part.column(column).combine_chunks()

    def _gather(self, rows: np.ndarray, column: str | None) -> pa.Table | pa.Array:
        """Rows (or one column's values) by row number, read part by part.

        Only the parts holding a requested row are touched, so the cost is
        in the rows asked for, not in the namespace size.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if len(self.parts) <= 1:
            return self._part(0, column).take(pa.array(rows, type=pa.int64()))
        if column is None and len(rows) <= FEW_ROWS:
            return self._slices(rows)
        which = np.searchsorted(self.part_starts, rows, side="right") - 1
        order = np.argsort(which, kind="stable")
        bounds = np.flatnonzero(np.diff(which[order])) + 1
        pieces = []
        for group in np.split(order, bounds) if len(rows) else []:
            p = int(which[group[0]])
            local = pa.array(rows[group] - self.part_starts[p], type=pa.int64())
            pieces.append(self._part(p, column).take(local))
        if not pieces:
            return self._part(0, column).slice(0, 0)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        merged = (
            pa.concat_tables(pieces).combine_chunks()
            if column is None
            else pa.concat_arrays(pieces)
        )
        return merged.take(pa.array(inverse, type=pa.int64()))

    def _slices(self, rows: np.ndarray) -> pa.Table:
        """A few rows as zero-copy one-row slices (a search's top-k).

        A `take` per part costs a compute call per column and part (~1 ms
        for 10 rows spread over 20 segments); slicing costs ~6 µs a row.
        """
        parts = np.searchsorted(self.part_starts, rows, side="right") - 1
        pieces = [
            self.parts[p].slice(r - self.part_starts[p], 1)
            for r, p in zip(rows.tolist(), parts.tolist(), strict=True)
        ]
        return pa.concat_tables(pieces) if pieces else self.payload.empty_table()

    def take_column(self, column: str, rows: np.ndarray) -> pa.Array:
        """One column's values at these row numbers."""
        if column == EMBEDDING:
            return embedding_array(self.vec.vectors(rows))
        out: pa.Array = self._gather(rows, column)
        return out

    def take(self, rows: np.ndarray) -> pa.Table:
        """These rows (every column) with their current access stats."""
        t: pa.Table = self._gather(rows, None)
        i = self.schema.get_field_index(EMBEDDING)
        t = t.add_column(i, self.schema.field(i), embedding_array(self.vec.vectors(rows)))
        for col, values in (("last_accessed_at", self.last_us), ("access_count", self.count)):
            i = t.schema.get_field_index(col)
            arr = pa.array(values[rows], type=TS if col == "last_accessed_at" else pa.int64())
            t = t.set_column(i, t.schema.field(i), arr)
        return t

    def found(self, rows: np.ndarray, scores: np.ndarray) -> RowsFound:
        """These rows as the read path's result (`tiers.found`): read in place
        from their payload parts, with their current access stats."""
        if self._readers is None:
            self._readers = [MemoryReader(p, apart=ACCESS_COLUMNS) for p in self.parts]
        which = (np.searchsorted(self.part_starts, rows, side="right") - 1).tolist()
        readers, starts = self._readers, self.part_starts
        at = [(readers[p], r - starts[p]) for r, p in zip(rows.tolist(), which, strict=True)]
        stats = (self.last_us[rows].tolist(), self.count[rows].tolist())
        return RowsFound("l2", at, self.vec.vectors(rows), scores.tolist(), stats)

    def touch(self, id_: str, us: int) -> None:
        """One access of a held id at `us` µs."""
        row = self.id2row[id_]
        self.last_us[row] = us
        self.count[row] += 1

    def live_bytes(self) -> int:
        """Approximate bytes of the live rows (Arrow share plus vectors)."""
        if not self.vec.n:
            return 0
        arrow = sum(p.nbytes for p in self.parts) * self.vec.n_live // self.vec.n
        return int(arrow + self.vec.n_live * self.params.dim * 4)

    # -- writes -----------------------------------------------------------

    def next_seq(self) -> int:
        """A seq above every loaded segment (compaction only ever raises it)."""
        return self.seqs[-1] + 1 if self.seqs else 1

    def write_segment(self, table: pa.Table, seq: int, *, compacted: bool = False) -> None:
        """Write `table` durably as segment `seq` (temp, fsync, rename, dir fsync)."""
        if compacted:
            table = table.replace_schema_metadata({COMPACTED: b"1"})
        path = self.path / f"seg-{seq:08d}.arrow"
        with io_errors("segment write", path):
            write_ipc(path, table)

    def tombstone(self, entries: list[tuple[str, int]]) -> None:
        """Append (id, seq) tombstones durably."""
        if not entries:
            return
        append_tombstones(self.path / TOMBSTONES, entries)
        self.tomb_lines += len(entries)

    def kill_ids(self, ids: list[str], *, persist: bool) -> None:
        """Remove held ids: tombstones first (when `persist`), then memory."""
        ids = [i for i in ids if i in self.id2row]
        rows = [self.id2row[i] for i in ids]
        if persist:
            self.tombstone([(i, self.seq_of(r)) for i, r in zip(ids, rows, strict=True)])
        self.vec.kill(np.asarray(rows, dtype=np.int64))
        for i in ids:
            del self.id2row[i]

    def save_access(self) -> None:
        """Persist access stats of live rows (seq included: an older copy never wins)."""
        rows = np.flatnonzero(self.vec.live)
        table = pa.table(
            {
                "id": self.take_column("id", rows),
                "seq": pa.array([self.seq_of(int(r)) for r in rows], pa.int64()),
                "last_accessed_at": pa.array(self.last_us[rows], type=TS),
                "access_count": pa.array(self.count[rows], type=pa.int64()),
            }
        )
        with io_errors("access stats write", self.path / ACCESS):
            write_ipc(self.path / ACCESS, table)

    def covers(self) -> dict[str, object]:
        """What a saved index must have been built from to be reused."""
        return {"rows": self.vec.n, "segments": list(self.seqs), "tombstones": self.tomb_lines}

    def save_index(self) -> None:
        """Checkpoint the HNSW index, if one was built."""
        with io_errors("index save", self.path):
            self.vec.save_ann(self.path, self.covers())

    def compacted(self) -> Namespace:
        """Rewrite the live rows as one compacted segment; returns the new state.

        Crash safety: the rename of the compacted segment (seq above all
        others) is the single commit point. Loading honours the highest
        compacted segment and ignores every lower seq and its tombstones,
        so before the rename the old segments + tombstones give the live
        set, after it the new segment alone holds exactly that set (it was
        written from it). The later steps (delete old segments, empty
        tombstones.log via temp+rename, drop the index) only remove files
        that loading already ignores, so a crash between them changes
        nothing; a new writable open finishes the deletions.
        """
        rows = np.flatnonzero(self.vec.live)
        table = self.take(rows).combine_chunks()
        seq = self.next_seq()
        self.write_segment(table, seq, compacted=True)
        new = Namespace(self.name, self.path, self.params)
        new.append(table, seq)
        with io_errors("compaction cleanup", self.path):
            for old in self.seqs:
                (self.path / f"seg-{old:08d}.arrow").unlink(missing_ok=True)
            write_durably(self.path / TOMBSTONES, lambda fh: None)
            self.vec.drop_ann(self.path)  # row numbers changed; rebuilt lazily
        return new

    # -- search -----------------------------------------------------------

    def search(
        self, q: np.ndarray, k: int, flt: Filter, threshold: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the top-k live rows passing `flt`, best first.

        Plain-column conditions are a cheap vectorised mask over all rows;
        metadata `where` (JSON per row) is only evaluated on ranked
        candidates, best first, until k pass.
        """
        q = normalise(q)
        base = self._plain_mask(flt)
        n_pass = self.vec.n if base is None else int(base.sum())
        if n_pass == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self.vec.n_live >= threshold and n_pass >= threshold:
            if self.vec.ann is None:
                self.vec.build_ann()
            # Over-fetch in proportion to what the plain filter removes; more for `where`.
            fetch = k * 4 * math.ceil(self.vec.n_live / n_pass) * (2 if flt.where else 1)
            rows, scores = self.vec.search_ann(q, min(fetch, self.vec.n_live))
            if base is not None:
                keep = base[rows]
                rows, scores = rows[keep], scores[keep]
            rows, scores = self._where(rows, scores, k, flt)
            if len(rows) >= k:
                return rows, scores
        # Small (or heavily filtered) sets, and ANN shortfalls: exact over what passes.
        cand = None if base is None else np.flatnonzero(base)
        rows, scores = self.vec.exact(q, cand, n_pass if flt.where else k)
        return self._where(rows, scores, k, flt)

    def _plain_mask(self, flt: Filter) -> np.ndarray | None:
        """Live rows passing every condition of `flt` but `where`; None when that is
        every row (all live, nothing filtered: the common search, spared a mask).

        Expiry and supersession (set on nearly every search) come from the
        per-row arrays, and cost nothing when no row has them set; the
        rest (kinds, time range) is an Arrow mask over the whole table.
        """
        now = flt.now if self.any_exp else None
        superseded = not flt.include_superseded and self.any_superseded
        plain = flt.kinds is None and flt.since is None and flt.until is None
        if plain and now is None and not superseded and self.vec.n_live == self.vec.n:
            return None
        mask: np.ndarray = self.vec.live.copy()
        if now is not None:
            mask &= self.exp_us > to_us(now if now.tzinfo else now.replace(tzinfo=UTC))
        if superseded:
            mask &= ~self.superseded
        if not plain:
            mask &= replace(flt, where=(), now=None, include_superseded=True).mask(self.table)
        return mask

    def _where(
        self, rows: np.ndarray, scores: np.ndarray, k: int, flt: Filter
    ) -> tuple[np.ndarray, np.ndarray]:
        if not flt.where:
            return rows[:k], scores[:k]
        found: list[int] = []
        step = max(2 * k, 64)
        for start in range(0, len(rows), step):
            values = self.take_column("metadata", rows[start : start + step]).to_pylist()
            ok = [flt.match_metadata(json.loads(v)) for v in values]
            found.extend((np.flatnonzero(ok) + start).tolist())
            if len(found) >= k:
                break
        idx = np.asarray(found[:k], dtype=np.int64)
        return rows[idx], scores[idx]
