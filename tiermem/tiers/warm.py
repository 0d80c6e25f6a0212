"""L2 warm tier: Arrow IPC segments on disk, vectors and payload in memory.

On-disk layout, per namespace ``root/<quote(ns, safe='')>/``:

- ``namespace``: the namespace string;
- ``seg-<8-digit seq>.arrow``: append-only Arrow IPC files, one per put()
  (temp file, fsync, rename, dir fsync: a segment exists whole or not at
  all). A segment whose schema metadata says ``tiermem.compacted`` holds
  every live row as of its writing and supersedes all lower seqs;
- ``tombstones.log``: ``<id>\\t<seq>\\n`` lines, appended and fsynced; one
  kills the row of that id in segment ``seq`` only. A torn last line is
  ignored (and cut off on a writable open so appends start on a new line);
- ``access.arrow``: access stats (id, seq, last_accessed_at, access_count),
  written on checkpoint()/close() only. A crash loses the accesses since the
  last checkpoint: they are hints for eviction, not data;
- ``index.usearch`` + ``index.json``: the checkpointed HNSW index (derived).

Loading replays segments in seq order (later rows of an id win) and then
the tombstones. Row number = position in that order, dead rows included.
read_only=True never writes or creates files; put/delete/forget raise
TierMemError("read-only") and touch() is a silent no-op, so read-only
searchers can share code paths with writers.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiermem.errors import TierMemError, ValidationError
from tiermem.filters import Filter
from tiermem.ids import to_us
from tiermem.model import TierName, TierStats
from tiermem.schema import COLUMNS, schema
from tiermem.tiers.base import SCORE
from tiermem.tiers.found import Found, no_rows
from tiermem.tiers.warm_files import io_errors, write_namespace_name
from tiermem.tiers.warm_index import HnswParams, fsync_path
from tiermem.tiers.warm_load import load_namespace
from tiermem.tiers.warm_ns import Namespace

# From benchmarks/crossover.py (dim 384, clustered vectors, bf16 HNSW M=16,
# 200 queries, 2 cores, p50 per query in ms; exact = one matmul +
# argpartition over the namespace; run 2026-11-24):
#
#   rows     exact   HNSW   recall@10  HNSW build rows/s
#   1,000    0.027   0.057  0.985      39,048
#   2,000    0.029   0.065  0.995      32,026
#   5,000    0.058   0.075  1.000      19,841
#   10,000   0.118   0.076  0.997      17,902
#   20,000   0.461   0.084  0.996      19,611
#   50,000   1.535   0.104  0.995      17,895
#
# HNSW is faster from ~10k rows, and exact grows linearly after that (far
# worse when other processes compete for the cores). But on random,
# unclustered vectors (benchmarks/core.py) HNSW lost recall above 5k rows
# (recall@10 0.899 with the threshold at 5k), and an index build is a
# first-query stall; up to 20k exact stays under ~0.5 ms with recall 1.0.
# `l2.exact_threshold` (config.py) defaults to this.
DEFAULT_EXACT_THRESHOLD = 20_000
COMPACT_SEGMENTS = 32  # compact a namespace with more segments than this...
COMPACT_DEAD = 0.25  # ...or with more than this fraction of dead rows
SCAN_BATCH = 10_000
WRITERS = 8  # segment writes in flight at once (fsync-bound, not CPU-bound)


class WarmTier:
    """L2: per-namespace Arrow segments + exact/HNSW vector search (see module doc)."""

    name: TierName = "l2"

    def __init__(
        self,
        root: Path,
        dim: int,
        *,
        exact_threshold: int = DEFAULT_EXACT_THRESHOLD,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
        dtype: str = "bf16",
        read_only: bool = False,
    ) -> None:
        self.root = Path(root)
        self.dim = dim
        self.exact_threshold = exact_threshold
        self.read_only = read_only
        self.params = HnswParams(dim, connectivity, expansion_add, expansion_search, dtype)
        self.schema = schema(dim)
        self.index_builds = 0  # HNSW builds since open (tests assert reuse)
        self._lock = threading.RLock()
        self._ns: dict[str, Namespace] = {}
        self._home: dict[str, Namespace] = {}  # id -> namespace holding it
        self._open()

    # -- opening ---------------------------------------------------------

    def _open(self) -> None:
        with io_errors("open", self.root):
            if not self.root.exists():
                if self.read_only:
                    return
                self.root.mkdir(parents=True)
            for entry in sorted(self.root.iterdir()):
                if entry.name.startswith(".trash-") and not self.read_only:
                    shutil.rmtree(entry)  # a forget() interrupted after its rename
                elif entry.is_dir() and not entry.name.startswith("."):
                    self._adopt(load_namespace(entry, self.params, self.read_only))

    def _adopt(self, ns: Namespace) -> None:
        self._ns[ns.name] = ns
        for id_ in list(ns.id2row):
            other = self._home.get(id_)
            if other is not None:  # a cross-namespace move interrupted by a crash
                loser, keep = self._older(other, ns, id_)
                loser.kill_ids([id_], persist=not self.read_only)
                if keep is not ns:
                    continue
            self._home[id_] = ns

    @staticmethod
    def _older(a: Namespace, b: Namespace, id_: str) -> tuple[Namespace, Namespace]:
        def key(ns: Namespace) -> tuple[int, int]:
            t = ns.take(ns.rows_of([id_]))
            return t["version"][0].as_py(), to_us(t["updated_at"][0].as_py())

        return (a, b) if key(a) <= key(b) else (b, a)

    # -- writes ----------------------------------------------------------

    def _writable(self) -> None:
        if self.read_only:
            raise TierMemError("read-only")

    def _conform(self, table: pa.Table) -> pa.Table:
        if set(table.column_names) != set(COLUMNS):
            raise ValidationError(f"expected columns {list(COLUMNS)}", field="table")
        try:
            table = table.select(list(COLUMNS)).cast(self.schema).replace_schema_metadata(None)
        except (pa.ArrowException, ValueError) as exc:
            raise ValidationError(f"does not match the L2 schema: {exc}", field="table") from exc
        ids = table.column("id").to_pylist()
        if any("\t" in i or "\n" in i for i in ids):
            raise ValidationError("ids must not contain tabs or newlines", field="id")
        last = {id_: i for i, id_ in enumerate(ids)}  # duplicate ids: the last one wins
        if len(last) < len(ids):
            table = table.take(sorted(last.values()))
        return table

    def put(self, table: pa.Table) -> None:
        """Upsert rows; one durable segment per namespace, then tombstones for old rows.

        The segments of a batch (one per namespace it touches) are written
        concurrently: each is its own file and directory, and the file
        system folds concurrent fsyncs into fewer journal commits (about 2x
        faster for 100 small segments here). Memory state and tombstones
        follow, one namespace at a time, for the segments that were written.
        """
        self._writable()
        table = self._conform(table)
        with self._lock:
            subs = [
                (self._namespace(name), table.filter(pc.equal(table.column("namespace"), name)))
                for name in pc.unique(table.column("namespace")).to_pylist()
            ]
            seqs = [ns.next_seq() for ns, _ in subs]
            written = _write_all(
                [
                    partial(ns.write_segment, sub, seq)
                    for (ns, sub), seq in zip(subs, seqs, strict=True)
                ]
            )
            for (ns, sub), seq, error in zip(subs, seqs, written, strict=True):
                if error is None:
                    self._apply_segment(ns, sub, seq)
            if (first := next((e for e in written if e is not None), None)) is not None:
                raise first

    def _namespace(self, name: str) -> Namespace:
        """The namespace, created (directory and name file, durably) if new."""
        ns = self._ns.get(name)
        if ns is None:
            path = self.root / quote(name, safe="")
            with io_errors("create namespace", path):
                path.mkdir(exist_ok=True)
                write_namespace_name(path, name)
                fsync_path(self.root, directory=True)
            ns = self._ns[name] = Namespace(name, path, self.params)
        return ns

    def _apply_segment(self, ns: Namespace, sub: pa.Table, seq: int) -> None:
        """A durably written segment into memory, then tombstones for replaced rows."""
        ids = sub.column("id").to_pylist()
        moved: dict[Namespace, list[str]] = {}
        for id_ in ids:
            home = self._home.get(id_)
            if home is not None:
                moved.setdefault(home, []).append(id_)
        same = [(i, ns.seq_of(ns.id2row[i])) for i in moved.pop(ns, [])]
        # Durable first, tombstones after: a crash in between leaves a duplicate,
        # never a loss (within a namespace later rows win on load anyway).
        with io_errors("index add", ns.path):
            kept = ns.append(sub, seq)  # also retires the older rows of these ids here
        self._home.update(dict.fromkeys(kept, ns))  # the same str objects as id2row's keys
        ns.tombstone(same)
        for home, old in moved.items():
            home.kill_ids(old, persist=True)

    def delete(self, ids: Sequence[str]) -> int:
        """Tombstone these ids; returns how many were held."""
        self._writable()
        with self._lock:
            groups: dict[Namespace, list[str]] = {}
            for id_ in dict.fromkeys(ids):
                home = self._home.get(id_)
                if home is not None:
                    groups.setdefault(home, []).append(id_)
            for ns, group in groups.items():
                ns.kill_ids(group, persist=True)
                for id_ in group:
                    del self._home[id_]
            return sum(len(g) for g in groups.values())

    def forget(self, namespace: str) -> int:
        """Remove a namespace: atomic rename to a trash dir, then delete it."""
        self._writable()
        with self._lock:
            ns = self._ns.pop(namespace, None)
            if ns is None:
                return 0
            self._drop_dir(ns)
            return ns.vec.n_live

    def _drop_dir(self, ns: Namespace) -> None:
        for id_ in ns.id2row:
            if self._home.get(id_) is ns:
                del self._home[id_]
        trash = self.root / f".trash-{uuid.uuid4().hex}"
        with io_errors("forget", ns.path):
            ns.path.rename(trash)  # the commit point; _open() finishes a torn rmtree
            fsync_path(self.root, directory=True)
            shutil.rmtree(trash)

    def touch(self, ids: Sequence[str], at: datetime) -> None:
        """Record one access per held id, in memory (persisted on checkpoint)."""
        if self.read_only:
            return
        us = to_us(at)
        with self._lock:
            for id_ in ids:
                home = self._home.get(id_)
                if home is not None:
                    home.touch(id_, us)

    # -- reads -----------------------------------------------------------

    def locate(self, ids: Sequence[str]) -> dict[str, str]:
        """id -> namespace of the ids held here (in memory, no rows read)."""
        with self._lock:
            return {i: home.name for i in ids if (home := self._home.get(i)) is not None}

    def get(self, ids: Sequence[str]) -> pa.Table:
        """Rows of the held ids, with current access stats."""
        with self._lock:
            groups: dict[Namespace, list[str]] = {}
            for id_ in dict.fromkeys(ids):
                home = self._home.get(id_)
                if home is not None:
                    groups.setdefault(home, []).append(id_)
            parts = [ns.take(ns.rows_of(g)) for ns, g in groups.items()]
        return _concat(parts, self.schema)

    def scan(self, namespace: str | None = None) -> Iterator[pa.Table]:
        """Live rows, per namespace, in batches of up to 10k."""
        with self._lock:
            names = sorted(self._ns) if namespace is None else [namespace]
            spaces = [self._ns[n] for n in names if n in self._ns]
        for ns in spaces:
            with self._lock:
                rows = np.flatnonzero(ns.vec.live)
            for start in range(0, len(rows), SCAN_BATCH):
                with self._lock:  # never hold the lock across a yield
                    batch = ns.take(rows[start : start + SCAN_BATCH])
                yield batch

    def count(self, namespace: str, kind: str) -> int:
        """How many live memories of `kind` the namespace holds here (a column mask)."""
        with self._lock:
            ns = self._ns.get(namespace)
            return 0 if ns is None else int(np.count_nonzero(_live_where(ns, kind)))

    def named(self, namespace: str, kind: str, name: str) -> list[str]:
        """Ids of live rows of `kind` in `namespace` named `name` (a payload mask: no
        vectors, no rows built)."""
        with self._lock:
            ns = self._ns.get(namespace)
            if ns is None:
                return []
            mask = _live_where(ns, kind, pc.equal(ns.table["name"], name))
            ids: list[str] = ns.take_column("id", np.flatnonzero(mask)).to_pylist()
            return ids

    def search(self, namespace: str, vector: np.ndarray, k: int, flt: Filter) -> pa.Table:
        """Top-k live rows of one namespace by cosine similarity, with `_score`."""
        with self._lock:
            ns, rows, scores = self._top(namespace, vector, k, flt)
            if ns is None:
                return _scored(self.schema.empty_table(), np.zeros(0))
            return _scored(ns.take(rows), scores)

    def find(self, namespace: str, vector: np.ndarray, k: int, flt: Filter) -> Found:
        """The same top-k as `search`, as Python rows: no table built (`tiers.found`)."""
        with self._lock:
            ns, rows, scores = self._top(namespace, vector, k, flt)
            return no_rows("l2", self.dim) if ns is None else ns.found(rows, scores)

    def _top(
        self, namespace: str, vector: np.ndarray, k: int, flt: Filter
    ) -> tuple[Namespace | None, np.ndarray, np.ndarray]:
        """The namespace (None if not held or k <= 0), its top-k rows and scores."""
        ns = self._ns.get(namespace)
        if ns is None or k <= 0:
            return None, np.zeros(0, np.int64), np.zeros(0)
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if q.shape != (self.dim,):
            raise ValidationError(f"must have {self.dim} dimensions", field="vector")
        before = ns.vec.ann is not None
        with io_errors("search", ns.path):
            rows, scores = ns.search(q, k, flt, self.exact_threshold)
        self.index_builds += int(ns.vec.ann is not None and not before)
        return ns, rows, scores

    def namespaces(self) -> set[str]:
        """Namespaces with at least one live row."""
        with self._lock:
            return {n for n, ns in self._ns.items() if ns.vec.n_live}

    def stats(self) -> TierStats:
        """Live rows and approximate bytes (live share of Arrow data, plus vectors)."""
        with self._lock:
            count = sum(ns.vec.n_live for ns in self._ns.values())
            size = sum(ns.live_bytes() for ns in self._ns.values())
            return TierStats(count=count, bytes=size, namespaces=len(self.namespaces()))

    # -- housekeeping ----------------------------------------------------

    def checkpoint(self) -> None:
        """Compact where worthwhile, then persist access stats and HNSW indexes."""
        if self.read_only:
            return
        with self._lock:
            for ns in list(self._ns.values()):
                if ns.vec.n_live == 0:
                    self._ns.pop(ns.name)
                    self._drop_dir(ns)  # nothing live: the directory is pure garbage
                    continue
                dead = 1 - ns.vec.n_live / ns.vec.n
                if len(ns.seqs) > COMPACT_SEGMENTS or dead > COMPACT_DEAD:
                    ns = self._ns[ns.name] = ns.compacted()
                    self._home.update(dict.fromkeys(ns.id2row, ns))
                ns.save_access()
                ns.save_index()

    def close(self) -> None:
        """Checkpoint (persists access stats and indexes)."""
        self.checkpoint()


def _live_where(ns: Namespace, kind: str, also: pa.ChunkedArray | None = None) -> np.ndarray:
    """Mask of the namespace's live rows of `kind` (and, if given, `also`)."""
    hit = pc.equal(ns.table["kind"], kind)
    if also is not None:
        hit = pc.and_(hit, also)
    mask: np.ndarray = pc.fill_null(hit, False).to_numpy(zero_copy_only=False) & ns.vec.live
    return mask


def _concat(parts: list[pa.Table], sch: pa.Schema) -> pa.Table:
    parts = [p for p in parts if p.num_rows]
    return pa.concat_tables(parts).combine_chunks() if parts else sch.empty_table()


def _write_all(writes: list[Callable[[], None]]) -> list[BaseException | None]:
    """Run the writes, concurrently when there are several; each one's error or None."""
    if len(writes) == 1:
        try:
            writes[0]()
        except Exception as exc:  # handed back; the caller re-raises it
            return [exc]
        return [None]
    with ThreadPoolExecutor(max_workers=min(WRITERS, len(writes))) as pool:
        futures = [pool.submit(write) for write in writes]
    return [f.exception() for f in futures]


def _scored(table: pa.Table, scores: np.ndarray) -> pa.Table:
    return table.append_column(SCORE, pa.array(np.asarray(scores, dtype=np.float64)))
