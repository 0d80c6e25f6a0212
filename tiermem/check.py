"""Consistency check (and repair) across the three tiers.

`check(engine, fix=False)` looks for, in this order (each fix runs before the
next check, so later checks see the repaired state):

- ``journal``: a move intent left in ``moves/`` (unfinished). Fix: `Mover.recover`.
- ``journal.corrupt``: a journal line or file that is not a move intent. Report only.
- ``l1.dangling``: a directory entry whose record is gone. Fix: drop it from
  the directory and the namespace's indexes.
- ``l1.unindexed``: a record missing from the directory. Fix: re-link it and
  re-put it (a whole-record put rebuilds every index).
- ``l1.conflict``: a record whose id the directory places in another
  namespace that also holds it. Report only.
- ``l3.missing``: a file the manifest names is not on disk. Report only: its
  rows are lost.
- ``l3.size``: a data file's size differs from the manifest's. Report only.
- ``l3.orphan``: a file under ``l3/data`` (or a temp file) that the manifest
  does not name. Fix: delete it (it was never, or is no longer, visible).
- ``l3.duplicate``: one id live in two L3 data files. Report only.
- ``duplicate``: one id in two tiers. Fix: `Mover.resolve` keeps the copy
  `moves.winner` picks (newest version, then hottest tier).
- ``l2.unsearchable``: a live L2 row a search cannot find. Fix: re-put the
  rows (which re-indexes them), then search again.

L2 search is checked on a sample of `sample` rows per namespace (each
searched with its own vector, k=10); a namespace at most that big is checked
whole with one search of k = its live count. Everything else is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from tiermem import schema
from tiermem.errors import TierMemError
from tiermem.filters import Filter
from tiermem.model import TierName
from tiermem.tiers import manifest as mf
from tiermem.tiers.hot_redis import BATCH, redis_errors

if TYPE_CHECKING:
    from tiermem.engine import Engine
    from tiermem.tiers.hot import HotTier

SAMPLE = 64
TIE = 1e-5  # a hit this close to a row's self-score is an identical vector: as good as found


class Problem(BaseModel):
    """One inconsistency: `kind` (see the module doc), the id or path, and whether fixed."""

    kind: str
    id: str | None = None
    path: str | None = None
    detail: str
    fixed: bool = False


class CheckReport(BaseModel):
    """What `check` found (and fixed). `checked` counts what was looked at."""

    problems: list[Problem] = Field(default_factory=list)
    checked: dict[str, int] = Field(default_factory=dict)

    @property
    def unfixed(self) -> list[Problem]:
        return [p for p in self.problems if not p.fixed]

    @property
    def ok(self) -> bool:
        """True when nothing remains wrong."""
        return not self.unfixed


def check(engine: Engine, *, fix: bool = False, sample: int = SAMPLE) -> CheckReport:
    """Check the store's consistency; with `fix`, repair what can be repaired."""
    if fix:
        engine._writable()
    report = CheckReport()
    _journals(engine, report, fix)
    _hot(engine.backends.l1, report, fix)
    _cold_files(engine, report, fix)
    warm = _duplicates(engine, report, fix, sample)
    _warm_search(engine, report, fix, warm)
    return report


# -- journals ----------------------------------------------------------------------


def _journals(engine: Engine, report: CheckReport, fix: bool) -> None:
    journal = engine.mover.journal
    pending, unreadable = journal.read()
    report.checked["journals"] = len(pending) + len(unreadable)
    for bad in unreadable:
        report.problems.append(Problem(kind="journal.corrupt", path=bad.where, detail=bad.detail))
    found = [
        Problem(
            kind="journal",
            path=i.where,
            detail=f"move {i.src} -> {i.dst} of {len(i.ids)} ids left unfinished",
        )
        for i in pending
    ]
    if fix and found and not unreadable:
        removed = engine.mover.recover()
        for p in found:
            p.fixed = True
            p.detail += f" (recovered; {removed} duplicate copies removed in all)"
    report.problems.extend(found)


# -- L1 ----------------------------------------------------------------------------


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _hot(l1: HotTier, report: CheckReport, fix: bool) -> None:
    client, keys = l1.client, l1.keys
    with redis_errors(l1.url):
        directory = {
            k.decode(): v.decode() for k, v in client.hscan_iter(keys.directory(), count=BATCH)
        }
        report.checked["l1.directory"] = len(directory)
        dangling: list[str] = []
        for chunk in _chunks(list(directory.items())):
            pipe = client.pipeline(transaction=False)
            for id_, ns in chunk:
                pipe.exists(keys.record(ns, id_))
            dangling += [id_ for (id_, _), n in zip(chunk, pipe.execute(), strict=True) if not n]
        for id_ in dangling:
            report.problems.append(
                Problem(
                    kind="l1.dangling",
                    id=id_,
                    detail=f"directory says namespace {directory[id_]!r}, no record there",
                    fixed=fix,
                )
            )
        if fix and dangling:
            l1.delete(dangling)  # no record to remove: unindexes and drops the entry
            for id_ in dangling:
                directory.pop(id_)
        head = keys.record("\0", "\0").split("\0")  # [prefix + ":{", "}:m:", ""]
        pattern = f"{_glob_escape(head[0])}*{_glob_escape(head[1])}*"
        unlinked: list[tuple[str, str]] = []
        records = 0
        for raw in client.scan_iter(match=pattern, count=BATCH):
            ns, sep, id_ = raw.decode()[len(head[0]) :].partition(head[1])
            if not sep:
                continue
            records += 1
            if directory.get(id_) != ns:
                unlinked.append((id_, ns))
        report.checked["l1.records"] = records
        for id_, ns in unlinked:
            other = directory.get(id_)
            if other is not None and client.exists(keys.record(other, id_)):
                detail = f"record in {ns!r}, but the directory places it in {other!r}"
                report.problems.append(Problem(kind="l1.conflict", id=id_, detail=detail))
                continue
            problem = Problem(kind="l1.unindexed", id=id_, detail=f"record in {ns!r}")
            if fix:
                client.hset(keys.directory(), id_, ns)
                l1.put(l1.get([id_]))  # a whole-record re-put rebuilds every index
                problem.fixed = True
            report.problems.append(problem)


# -- L3 files ----------------------------------------------------------------------


def _cold_files(engine: Engine, report: CheckReport, fix: bool) -> None:
    l3 = engine.backends.l3
    with l3.connection_lock:  # a put holds it from its first file write to its commit
        manifest = mf.load(l3.root, engine.dim)
        report.checked["l3.files"] = len(manifest.paths())
        sizes = {f.path: f.bytes for f in manifest.data}
        for rel in sorted(manifest.paths()):
            path = l3.root / rel
            if not path.is_file():
                report.problems.append(
                    Problem(kind="l3.missing", path=str(path), detail="named by the manifest")
                )
            elif rel in sizes and path.stat().st_size != sizes[rel]:
                detail = f"{path.stat().st_size} bytes, the manifest says {sizes[rel]}"
                report.problems.append(Problem(kind="l3.size", path=str(path), detail=detail))
        named = manifest.paths()
        data = l3.root / "data"
        found = list(l3.root.glob("*.tmp"))
        if data.is_dir():
            found += [
                p
                for p in data.rglob("*")
                if p.is_file() and p.relative_to(l3.root).as_posix() not in named
            ]
        for path in sorted(found):
            if fix:
                path.unlink(missing_ok=True)
            report.problems.append(
                Problem(
                    kind="l3.orphan", path=str(path), detail="not named by the manifest", fixed=fix
                )
            )


# -- duplicates across tiers -------------------------------------------------------


class _WarmSample:
    """Per L2 namespace: live count and a uniform sample of (id, vector)."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size, self.rng = size, rng
        self.count = 0
        self.all_ids: list[str] = []
        self.ids: list[str] = []
        self.vecs: list[np.ndarray] = []

    def add(self, table: pa.Table) -> None:
        ids = table.column("id").to_pylist()
        self.all_ids += ids
        mat = schema.vectors(table)
        for i, id_ in enumerate(ids):  # reservoir sampling
            self.count += 1
            if len(self.ids) < self.size:
                self.ids.append(id_)
                self.vecs.append(mat[i].copy())
            else:
                j = int(self.rng.integers(self.count))
                if j < self.size:
                    self.ids[j], self.vecs[j] = id_, mat[i].copy()


def _duplicates(
    engine: Engine, report: CheckReport, fix: bool, sample: int
) -> dict[str, _WarmSample]:
    """Ids held by two tiers (fixed with `Mover.resolve`); returns the L2 samples."""
    b = engine.backends
    where: dict[str, list[TierName]] = {}
    with redis_errors(b.l1.url):
        hot = [k.decode() for k, _ in b.l1.client.hscan_iter(b.l1.keys.directory(), count=BATCH)]
    for id_ in hot:
        where[id_] = ["l1"]
    warm, n_warm = _warm_samples(engine, sample)
    for s in warm.values():
        for id_ in s.all_ids:
            where.setdefault(id_, []).append("l2")
    cold = _cold_ids(engine)
    in_cold: set[str] = set()
    for id_ in cold:
        if id_ in in_cold:
            report.problems.append(
                Problem(kind="l3.duplicate", id=id_, detail="live in two L3 data files")
            )
            continue
        in_cold.add(id_)
        where.setdefault(id_, []).append("l3")
    report.checked.update({"l1": len(hot), "l2": n_warm, "l3": len(cold)})
    dups = {id_: tiers for id_, tiers in where.items() if len(tiers) > 1}
    error = ""
    if fix and dups:
        try:
            engine.mover.resolve(list(dups))
        except TierMemError as exc:  # e.g. an L3 file is missing
            error = f" (fix failed: {exc})"
        warm, _ = _warm_samples(engine, sample)  # resolving removed some L2 rows
    for id_, tiers in sorted(dups.items()):
        detail = f"held by {', '.join(tiers)}{error}"
        fixed = fix and not error
        report.problems.append(Problem(kind="duplicate", id=id_, detail=detail, fixed=fixed))
    return warm


def _warm_samples(engine: Engine, sample: int) -> tuple[dict[str, _WarmSample], int]:
    """Per L2 namespace: its live ids and a sample of rows; and the live total."""
    warm: dict[str, _WarmSample] = {}
    rng = np.random.default_rng(0)
    total = 0
    for table in engine.backends.l2.scan():
        total += table.num_rows
        for ns, sub in _by_namespace(table):
            warm.setdefault(ns, _WarmSample(sample, rng)).add(sub)
    return warm, total


def _cold_ids(engine: Engine) -> list[str]:
    """Live L3 ids (repeats kept), read per file with pyarrow; missing files skipped."""
    l3 = engine.backends.l3
    dead: dict[str, set[str]] = {}
    deleted = l3.deleted()
    for id_, file in zip(
        deleted.column("id").to_pylist(), deleted.column("file").to_pylist(), strict=True
    ):
        dead.setdefault(file, set()).add(id_)
    out: list[str] = []
    for path in l3.files():
        if not path.is_file():
            continue  # reported as l3.missing
        try:
            ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        except (OSError, pa.ArrowException):
            continue
        gone = dead.get(str(path), set())
        out += [i for i in ids if i not in gone]
    return out


def _by_namespace(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    names = table.column("namespace").to_pylist()
    for ns in dict.fromkeys(names):
        rows = [i for i, n in enumerate(names) if n == ns]
        yield ns, table if len(rows) == len(names) else table.take(pa.array(rows, pa.int64()))


# -- L2 search ---------------------------------------------------------------------


def _warm_search(
    engine: Engine, report: CheckReport, fix: bool, warm: dict[str, _WarmSample]
) -> None:
    l2 = engine.backends.l2
    flt = Filter(include_superseded=True)  # no `now`: expired rows count too
    searched = 0
    for ns, s in sorted(warm.items()):
        missing = _unsearchable(engine, ns, s, flt)
        searched += min(s.count, s.size)
        if missing and fix:
            l2.put(l2.get(missing))
            still = set(_unsearchable(engine, ns, s, flt))
        else:
            still = set(missing)
        for id_ in missing:
            report.problems.append(
                Problem(
                    kind="l2.unsearchable",
                    id=id_,
                    detail=f"live in L2 namespace {ns!r} but not found by search",
                    fixed=id_ not in still,
                )
            )
    report.checked["l2.searched"] = searched


def _unsearchable(engine: Engine, ns: str, s: _WarmSample, flt: Filter) -> list[str]:
    l2 = engine.backends.l2
    if not s.ids:
        return []
    if s.count <= s.size:  # small: one search must return every live row
        hits = l2.search(ns, s.vecs[0], s.count, flt)
        got = set(hits.column("id").to_pylist())
        return [i for i in s.ids if i not in got]
    missing = []
    for id_, vec in zip(s.ids, s.vecs, strict=True):
        hits = l2.search(ns, vec, 10, flt)
        ids = hits.column("id").to_pylist()
        if id_ in ids:
            continue
        scores = hits.column("_score").to_pylist()
        if not scores or scores[-1] < 1.0 - TIE:  # all k hits tie with it: identical vectors
            missing.append(id_)
    return missing
