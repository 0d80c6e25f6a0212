"""Exact cosine top-k over L3 data files in the bytes layout, in numpy.

Files in the list layout are searched in DuckDB (`ColdReads.search`); files
in the bytes layout (cold_files.py) are read here with pyarrow, a few
columns at a time, and scored in numpy:

1. per file, read ``id``, ``embedding`` and the columns the filter needs;
   mask (filter, deleted ids), score each row group's vectors straight from
   the Parquet buffer (no list decode, no copy for float32), keep the file's
   best `k + MARGIN` passing rows (metadata `where` checked best first);
2. rank the survivors of all files by a float64 cosine, ties by id;
3. read the other columns of the winners' row groups only, and take them.

Two files are read at a time: pyarrow and numpy release the GIL.
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

READERS = 2  # files read at once
WHERE_STEP = 64  # metadata `where` checks per step, best first
# Survivors kept per file beyond k: float32 scores pick them, the float64 rerank
# (ties by id) decides, so near-ties at the k-th place are not lost to rounding.
MARGIN = 16


@dataclass
class Survivors:
    """A file's best passing rows: file row numbers, ids, vectors."""

    path: str
    rows: np.ndarray
    ids: list[str]
    vectors: np.ndarray


def top_k(
    files: list[tuple[str, frozenset[str]]], q: np.ndarray, k: int, flt: Filter, dim: int
) -> pa.Table:
    """The k best live rows passing `flt` over `files` ((path, deleted ids) pairs):
    schema(dim) columns plus ``filename`` and a float64 `SCORE`, best first."""
    q = np.asarray(q, dtype=np.float32)
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        found = list(pool.map(lambda f: _file_best(f[0], f[1], q, k, flt, dim), files))
    found = [s for s in found if len(s.rows)]
    if not found:
        return pa.table({})
    mat = np.concatenate([s.vectors for s in found]).astype(np.float64)
    q64 = q.astype(np.float64)
    norms = np.linalg.norm(mat, axis=1) * np.linalg.norm(q64)
    scores = np.divide(mat @ q64, norms, out=np.zeros(len(mat)), where=norms > 0)
    ids = [i for s in found for i in s.ids]
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:k]
    owner = np.repeat(np.arange(len(found)), [len(s.rows) for s in found])
    return _rows(found, owner, order, scores, mat)


def _file_best(
    path: str, dead: frozenset[str], q: np.ndarray, k: int, flt: Filter, dim: int
) -> Survivors:
    pf = pq.ParquetFile(path, memory_map=True)
    light = ["id", "kind", "created_at", "expires_at", "superseded_by"]
    table = pf.read(columns=[*light, "embedding", *(["metadata"] if flt.where else [])])
    mask = replace(flt, where=()).mask(table)
    if dead:
        dead_ids = pa.array(sorted(dead), pa.string())
        mask &= ~pc.is_in(table.column("id"), value_set=dead_ids).to_numpy(zero_copy_only=False)
    chunks = table.column("embedding").chunks
    scores = np.concatenate(
        [np.zeros(0, np.float32)] + [_cosines(blob_vectors(c, dim), q) for c in chunks]
    )
    passing = np.flatnonzero(mask)
    if flt.where:
        best = passing[np.argsort(-scores[passing], kind="stable")]
        best = _where(best, table.column("metadata"), k + MARGIN, flt)
    else:
        best = _best(passing, scores[passing], k + MARGIN)
    vecs = _gather(table.column("embedding"), best, dim)
    return Survivors(path, best, table.column("id").take(best).to_pylist(), vecs)


def _best(rows: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """The `n` rows of the highest scores, best first; ties in row order, which is
    id order (data files are sorted by id), as the final ranking breaks them."""
    if len(rows) > n:
        keep = scores >= np.partition(scores, len(scores) - n)[len(scores) - n]
        rows, scores = rows[keep], scores[keep]
    out: np.ndarray = rows[np.argsort(-scores, kind="stable")][:n]
    return out


def _cosines(mat: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Cosines of the rows of `mat` with unit-length-agnostic `q` (0 for zero rows)."""
    dots = mat @ q
    norms = np.sqrt(np.einsum("ij,ij->i", mat, mat)) * float(np.linalg.norm(q))
    out: np.ndarray = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
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
    """The winners (`order`: indexes into the survivors) as full rows, in that order."""
    starts = np.cumsum([0] + [len(s.rows) for s in found])
    by_file: dict[int, list[int]] = {}
    for i in order:
        by_file.setdefault(int(owner[i]), []).append(i)
    parts, placed = [], []
    for f, mine in by_file.items():
        s = found[f]
        table = _read_rows(s.path, s.rows[np.asarray(mine) - starts[f]])
        table = table.append_column("filename", pa.array([s.path] * len(mine), pa.string()))
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
