"""The one executor of moves between tiers, crash-safe.

Crash ordering, per batch (enforced in `Mover._move_batch`):

1. journal the intent (src, dst, ids), synced (`tiermem.journal`);
2. read the rows from `src`;
3. `dst.put(rows)`: durable when it returns (Redis ack / fsync + rename /
   manifest commit);
4. `src.delete(ids)`;
5. mark the journal entry done.

A crash before 3 completes leaves the rows only in `src` (nothing moved);
between 3 and 4 leaves each row in both tiers, identical; after 4 only the
journal is left. Never is a row in neither tier. On open, `recover()`
replays each leftover journal entry: every id found in both tiers keeps
the copy `winner()` picks (newest version, then hottest tier) and loses
the other. Reads resolve duplicates with the same rule, so readers in other
processes see one copy even mid-move. Moving an id that is not in `src`
is a no-op, so a move can simply be run again.

Batching: a move of more than one batch first orders its ids by namespace
(when the source tier can say where ids live without reading rows:
`locate`), so each batch touches few namespaces. L2 writes one fsynced
segment per namespace per put, so interleaved tenants would otherwise
cost one segment (two fsyncs) per namespace per batch. The order only
changes which ids share a batch; each batch still journals exactly its
ids before anything is copied.

Out of L1, Redis works while Python does (`_move_from_hot`): the next
batch's rows are read (a read changes nothing, so it needs no journal
entry yet) while this batch is written to the destination, and a batch's
delete runs while the next batch is written; its journal entry is marked
done once Redis acknowledges the delete. So up to two entries are in flight,
each still following steps 1-5 in order. Waiting for Redis was about a
third of an L1 -> L2 demote. A read done a batch ahead can miss an access
recorded meanwhile by another process (a `touch` on the row about to be
deleted), as a read within a batch always could, over a longer window.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pyarrow as pa

from tiermem import schema
from tiermem.errors import TierMemError
from tiermem.failpoints import failpoint
from tiermem.ids import Clock
from tiermem.journal import Intent, Journal
from tiermem.model import TIERS, TierName
from tiermem.tiers.base import Tier
from tiermem.tiers.hot import HotTier
from tiermem.tiers.hot_redis import Later

Batch = tuple[Sequence[str], Sequence[str] | None]  # ids, and each one's namespace if known
# rows -> the same rows (ids and versions unchanged) as they are to enter the destination
Patch = Callable[[pa.Table], pa.Table]
Done = Callable[[int, int], None]  # (batch number, memories moved), as a batch finishes
# a batch's number, rows moved, journal entry, and its delete from the source under way
Deleting = tuple[int, int, Intent, Later[int]]


def _ignore(batch: int, moved: int) -> None:
    """A `Done` that does nothing."""


def _cut(ids: Sequence[str], namespaces: Sequence[str] | None, sizes: Sequence[int]) -> list[Batch]:
    """`ids` (distinct) in consecutive batches of `sizes`."""
    if sum(sizes) != len(ids) or len(set(ids)) != len(ids):
        raise ValueError("cut: batch sizes must add up to the ids, and the ids be distinct")
    out: list[Batch] = []
    start = 0
    for size in sizes:
        nss = None if namespaces is None else namespaces[start : start + size]
        out.append((ids[start : start + size], nss))
        start += size
    return out


def winner(a: tuple[TierName, int], b: tuple[TierName, int]) -> tuple[TierName, int]:
    """Of two copies (tier, version) of one memory, the one to keep."""
    return max(a, b, key=lambda c: (c[1], -TIERS.index(c[0])))


class Mover:
    """Moves memories between tiers in batches, journaled (see module doc)."""

    def __init__(
        self,
        tiers: Mapping[TierName, Tier],
        journal_dir: Path,
        batch: int,
        clock: Clock,
        cold_batch: int | None = None,
    ) -> None:
        self.tiers = tiers
        self.journal = Journal(journal_dir)
        self.batch = batch
        self.cold_batch = cold_batch or batch
        self.clock = clock

    def batch_for(self, dst: TierName) -> int:
        """Memories per batch of a move into `dst` (L3 has its own, larger size)."""
        return self.cold_batch if dst == "l3" else self.batch

    def move(
        self,
        src: TierName,
        dst: TierName,
        ids: Sequence[str],
        namespaces: Sequence[str] | None = None,
        *,
        cut: Sequence[int] | None = None,
        each: Done | None = None,
        patch: Patch | None = None,
    ) -> int:
        """Move the ids held in `src` to `dst`; returns how many moved.

        `namespaces` (each id's, when the caller knows them: a plan does) spare
        L1 its directory lookups; an id not in its given namespace is not moved.
        `cut` (batch sizes adding up to `len(ids)`, ids distinct) moves exactly
        those consecutive batches, in order, instead of the mover's own; `each(i,
        moved)` is called as batch i finishes (its source copy deleted). A job
        passes both: it logs events per batch, as each is done.

        `patch` edits the rows on their way into `dst` (consolidation marks its
        sources so, instead of a put of each source before its move). It must
        keep each row's id and version: a crash between the copy and the delete
        leaves two copies of one version, recovery keeps the hotter (unpatched)
        one, and the caller must be able to patch it again on a later run.
        """
        if src == dst:
            return 0
        if cut is None:
            batches = self._batches(src, dst, ids, namespaces)
        else:
            batches = _cut(ids, namespaces, cut)
        if isinstance(self.tiers[src], HotTier):
            return self._move_from_hot(src, dst, batches, each or _ignore, patch)
        moved = 0
        for i, (chunk, _) in enumerate(batches):
            n = self._move_batch(src, dst, chunk, patch)
            (each or _ignore)(i, n)
            moved += n
        return moved

    def _batches(
        self, src: TierName, dst: TierName, ids: Sequence[str], namespaces: Sequence[str] | None
    ) -> list[Batch]:
        """`ids` (once each) in batches of `batch_for(dst)`, ordered by namespace."""
        size = self.batch_for(dst)
        where: Mapping[str, str] | None = None
        if namespaces is not None:
            where = dict(zip(ids, namespaces, strict=True))
        # an id twice would be read twice before its first delete (batches overlap)
        ids = list(dict.fromkeys(ids))
        locate = getattr(self.tiers[src], "locate", None)
        if len(ids) > size and (where is not None or locate is not None):
            at: Mapping[str, str] = where if where is not None else locate(ids)  # type: ignore[misc]
            ids = sorted(ids, key=lambda i: at.get(i, ""))  # stable: order kept within one
        batches: list[Batch] = []
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            batches.append((chunk, None if where is None else [where[i] for i in chunk]))
        return batches

    def _move_batch(
        self, src: TierName, dst: TierName, ids: Sequence[str], patch: Patch | None = None
    ) -> int:
        entry = self.journal.begin(src, dst, ids)
        failpoint("move.journaled")
        rows = self.tiers[src].get(ids)
        if rows.num_rows:
            self.tiers[dst].put(self._entering(rows, patch))  # durable before the source goes
            failpoint("move.copied")
            self.tiers[src].delete(rows.column("id").to_pylist())
            failpoint("move.deleted")
        entry.done()
        return int(rows.num_rows)

    def _entering(self, rows: pa.Table, patch: Patch | None) -> pa.Table:
        """`rows` as they enter their new tier now: patched, and `tiered_at` stamped."""
        if patch is not None:
            rows = patch(rows)
        at = pa.array([self.clock()] * rows.num_rows, schema.TS)
        return rows.set_column(rows.schema.get_field_index("tiered_at"), "tiered_at", at)

    def _move_from_hot(
        self, src: TierName, dst: TierName, batches: list[Batch], each: Done, patch: Patch | None
    ) -> int:
        """`_move_batch` of each batch out of L1, with Redis working alongside: the
        next batch's rows are read while this one is written to `dst`, and a
        batch's delete runs while the next one is written (module doc)."""
        tier = self.tiers[src]
        assert isinstance(tier, HotTier)
        moved = 0
        reads = tier.fetch_later(*batches[0]) if batches else None
        deleting: Deleting | None = None
        try:
            for i, (ids, _) in enumerate(batches):
                entry = self.journal.begin(src, dst, ids)
                failpoint("move.journaled")
                assert reads is not None
                rows, reads = reads.wait(), None
                if i + 1 < len(batches):  # a read changes nothing: no journal needed yet
                    reads = tier.fetch_later(*batches[i + 1])
                if rows.num_rows:
                    self.tiers[dst].put(self._entering(rows, patch))  # durable before src goes
                    failpoint("move.copied")
                done, deleting = deleting, None
                self._deleted(done, each)  # Redis ran it while `dst` was written
                if rows.num_rows:  # by the namespaces the rows were read from
                    nss = rows.column("namespace").to_pylist()
                    later = tier.delete_later(rows.column("id").to_pylist(), nss)
                    deleting = (i, rows.num_rows, entry, later)
                else:
                    entry.done()
                    each(i, 0)
                moved += rows.num_rows
            done, deleting = deleting, None
            self._deleted(done, each)
        except BaseException:
            if reads is not None:
                reads.cancel()
            if deleting is not None:  # finished if it can be; else recovery resolves it
                with contextlib.suppress(TierMemError):
                    self._deleted(deleting, each)
            raise
        return moved

    @staticmethod
    def _deleted(deleting: Deleting | None, each: Done) -> None:
        """Wait for a batch's delete from the source, clear its journal entry, and
        say the batch is done."""
        if deleting is not None:
            i, moved, entry, later = deleting
            later.wait()
            failpoint("move.deleted")
            entry.done()
            each(i, moved)

    def recover(self) -> int:
        """Finish or undo interrupted moves; returns how many duplicates were removed."""
        removed = 0
        for intent in self.journal.pending():
            removed += self.resolve(intent.ids, (intent.src, intent.dst))
            intent.done()
        self.journal.compact()
        return removed

    def resolve(self, ids: Sequence[str], tiers: Sequence[TierName] = TIERS) -> int:
        """Delete every copy of `ids` but the winner across `tiers`; returns copies removed."""
        found: dict[str, list[tuple[TierName, int]]] = {}
        for name in tiers:
            rows: pa.Table = self.tiers[name].get(ids)
            for id_, version in zip(
                rows.column("id").to_pylist(), rows.column("version").to_pylist(), strict=True
            ):
                found.setdefault(id_, []).append((name, version))
        losers: dict[TierName, list[str]] = {}
        for id_, copies in found.items():
            best = copies[0]
            for copy in copies[1:]:
                best = winner(best, copy)
            for copy in copies:
                if copy != best:
                    losers.setdefault(copy[0], []).append(id_)
        return sum(self.tiers[name].delete(lost) for name, lost in losers.items())
