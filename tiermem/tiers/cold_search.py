"""Exact cosine top-k over L3 data files in the bytes layout, in numpy.

Files in the list layout are searched in DuckDB (`ColdReads.search`); files
in the bytes layout (cold_files.py) are read here with pyarrow, a few
columns at a time, and scored in numpy:

1. per part of a file (a few row groups, ~`PART_ROWS` rows), read ``id``,
   ``embedding`` and the columns the filter needs; mask (filter, deleted
   ids); score each row group's vectors straight from the Parquet buffer (no
   list decode, no copy for float32); keep the part's best `k + MARGIN`
   passing rows (metadata `where` checked best first);
2. rank the survivors of all parts by a float64 cosine, ties by id;
3. read the other columns of the winners' row groups only, and take them.

Parts are read two at a time: pyarrow and numpy release the GIL, so a
tenant in one large file uses both cores.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tiermem.filters import Filter
from tiermem.schema import COLUMNS, embedding_array
from tiermem.tiers.base import SCORE
from tiermem.tiers.cold_files import blob_vectors

READERS = 2  # parts read at once
PART_ROWS = 40_000  # rows per part: a large file is read by several threads
WHERE_STEP = 64  # metadata `where` checks per step, best first
# Survivors kept per part beyond k: float32 scores pick them, the float64 rerank
# (ties by id) decides, so near-ties at the k-th place are not lost to rounding.
MARGIN = 16


@dataclass
class Part:
    """Some consecutive row groups of one file: a unit of parallel work."""

    path: str
    dead: frozenset[str]
    groups: list[int]
    first: int  # the file row number of the first row of `groups[0]`


@dataclass
class Survivors:
    """A part's best passing rows: file row numbers, ids, vectors."""

    path: str
    rows: np.ndarray
    ids: list[str]
    vectors: np.ndarray


class Norms:
    """Vector norms by (file, part), kept after a file's first search: data files
    are immutable, and the norms cost a pass over the vectors (~12% of a search),
    for 4 B a row. Emptied when it would hold more than `max_rows` rows."""

    def __init__(self, max_rows: int = 10_000_000) -> None:
        self.max_rows = max_rows
        self._norms: dict[tuple[str, int], np.ndarray] = {}
        self._rows = 0

    def of(self, part: Part, mats: list[np.ndarray]) -> np.ndarray:
        """The norms of `part`'s rows (`mats`: its vectors, by chunk)."""
        key = (part.path, part.first)
        norms = self._norms.get(key)
        if norms is None:
            norms = _concat([np.sqrt(np.einsum("ij,ij->i", m, m)) for m in mats])
            if self._rows + len(norms) > self.max_rows:
                self._norms, self._rows = {}, 0
            self._norms[key] = norms
            self._rows += len(norms)
        return norms


def top_k(
    files: list[tuple[str, frozenset[str]]],
    q: np.ndarray,
    k: int,
    flt: Filter,
    dim: int,
    norms: Norms | None = None,
) -> pa.Table:
    """The k best live rows passing `flt` over `files` ((path, deleted ids) pairs):
    schema(dim) columns plus ``filename`` and a float64 `SCORE`, best first."""
    q = np.asarray(q, dtype=np.float32)
    parts = [p for path, dead in files for p in _parts(path, dead)]
    cache = norms or Norms()
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        found = list(pool.map(lambda p: _part_best(p, q, k, flt, dim, cache), parts))
    found = [s for s in found if len(s.rows)]
    if not found:
        return pa.table({})
    mat = np.concatenate([s.vectors for s in found]).astype(np.float64)
    q64 = q.astype(np.float64)
    scale = np.linalg.norm(mat, axis=1) * np.linalg.norm(q64)
    scores = np.divide(mat @ q64, scale, out=np.zeros(len(mat)), where=scale > 0)
    ids = [i for s in found for i in s.ids]
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:k]
    owner = np.repeat(np.arange(len(found)), [len(s.rows) for s in found])
    return _rows(found, owner, order, scores, mat)


def _parts(path: str, dead: frozenset[str]) -> list[Part]:
    """The file cut into parts of about `PART_ROWS` rows (whole row groups)."""
    meta = pq.read_metadata(path, memory_map=True)
    parts: list[Part] = []
    first = 0
    for g in range(meta.num_row_groups):
        if not parts or sum(meta.row_group(h).num_rows for h in parts[-1].groups) >= PART_ROWS:
            parts.append(Part(path, dead, [], first))
        parts[-1].groups.append(g)
        first += meta.row_group(g).num_rows
    return parts


def _part_best(part: Part, q: np.ndarray, k: int, flt: Filter, dim: int, norms: Norms) -> Survivors:
    pf = pq.ParquetFile(part.path, memory_map=True)
    table = pf.read_row_groups(part.groups, columns=["id", "embedding", *flt.columns()])
    mask = replace(flt, where=()).mask(table)
    if part.dead:
        dead_ids = pa.array(sorted(part.dead), pa.string())
        mask &= ~pc.is_in(table.column("id"), value_set=dead_ids).to_numpy(zero_copy_only=False)
    mats = [blob_vectors(c, dim) for c in table.column("embedding").chunks]
    dots = _concat([m @ q for m in mats])
    scale = norms.of(part, mats) * float(np.linalg.norm(q))
    scores = np.divide(dots, scale, out=np.zeros_like(dots), where=scale > 0)
    passing = np.flatnonzero(mask)
    if flt.where:
        best = passing[np.argsort(-scores[passing], kind="stable")]
        best = _where(best, table.column("metadata"), k + MARGIN, flt)
    else:
        best = _best(passing, scores[passing], k + MARGIN)
    vecs = _gather(table.column("embedding"), best, dim)
    ids = table.column("id").take(best).to_pylist()
    return Survivors(part.path, best + part.first, ids, vecs)


def _best(rows: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """The `n` rows of the highest scores, best first; ties in row order, which is
    id order (data files are sorted by id), as the final ranking breaks them."""
    if len(rows) > n:
        keep = scores >= np.partition(scores, len(scores) - n)[len(scores) - n]
        rows, scores = rows[keep], scores[keep]
    out: np.ndarray = rows[np.argsort(-scores, kind="stable")][:n]
    return out


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    out: np.ndarray = np.concatenate([np.zeros(0, np.float32), *arrays])
    return out


def _where(best: np.ndarray, meta: pa.ChunkedArray, k: int, flt: Filter) -> np.ndarray:
    """The first k of `best` (rows, best first) whose metadata passes `flt.where`."""
    kept: list[int] = []
    for start in range(0, len(best), WHERE_STEP):
        rows = best[start : start + WHERE_STEP]
        values = meta.take(pa.array(rows)).to_pylist()
        passed = [flt.match_metadata(json.loads(v)) for v in values]
        kept += [int(r) for r, ok in zip(rows, passed, strict=True) if ok]
        if len(kept) >= k:
            break
    return np.asarray(kept[:k], dtype=np.int64)


def _gather(col: pa.ChunkedArray, rows: np.ndarray, dim: int) -> np.ndarray:
    """float32 vectors of these rows of an embedding column."""
    if not len(rows):
        return np.zeros((0, dim), np.float32)
    taken = col.take(pa.array(rows, pa.int64())).combine_chunks()
    return np.array(blob_vectors(taken, dim), dtype=np.float32)


def _rows(
    found: list[Survivors], owner: np.ndarray, order: list[int], scores: np.ndarray, mat: np.ndarray
) -> pa.Table:
    """The winners (`order`: indexes into the survivors) as full rows, in that order:
    one read per file, of the other columns of the row groups holding them."""
    starts = np.cumsum([0] + [len(s.rows) for s in found])
    by_file: dict[str, list[int]] = {}
    for i in order:
        by_file.setdefault(found[int(owner[i])].path, []).append(i)
    parts, placed = [], []
    for path, mine in by_file.items():
        rows = [int(found[int(owner[i])].rows[i - starts[owner[i]]]) for i in mine]
        table = _read_rows(path, np.asarray(rows, dtype=np.int64))
        table = table.append_column("filename", pa.array([path] * len(mine), pa.string()))
        table = table.append_column("embedding", embedding_array(mat[mine].astype(np.float32)))
        parts.append(table.append_column(SCORE, pa.array(scores[mine], pa.float64())))
        placed += mine
    at = {i: p for p, i in enumerate(placed)}
    out = pa.concat_tables(parts).take(pa.array([at[i] for i in order], pa.int64()))
    return out.select([*COLUMNS, "filename", SCORE])


def _read_rows(path: str, rows: np.ndarray) -> pa.Table:
    """Every column but the embedding at these file row numbers, in this order;
    only the row groups holding them are read."""
    pf = pq.ParquetFile(path, memory_map=True)
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    bounds = np.cumsum([0, *sizes])
    group_of = np.searchsorted(bounds, rows, side="right") - 1
    groups = np.unique(group_of)
    table = pf.read_row_groups(groups.tolist(), columns=[c for c in COLUMNS if c != "embedding"])
    # a row's place in `table`: the rows of the groups read before its own, then its offset
    before = np.cumsum([0, *[sizes[g] for g in groups]])[np.searchsorted(groups, group_of)]
    return table.take(pa.array(before + rows - bounds[group_of], pa.int64()))
