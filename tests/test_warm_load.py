"""L2 loading: vectors straight from a segment's chunks, payload detached from the file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa

from tests.test_warm import DIM, by_id, make
from tiermem.filters import Filter
from tiermem.schema import chunk_matrices, vectors
from tiermem.tiers.warm import WarmTier
from tiermem.tiers.warm_files import write_ipc
from tiermem.tiers.warm_index import HnswParams, VectorIndex


def test_chunk_matrices_are_views_of_each_chunk() -> None:
    mat = np.arange(7 * DIM, dtype=np.float32).reshape(7, DIM)
    arr = pa.FixedSizeListArray.from_arrays(pa.array(mat.ravel()), DIM)
    col = pa.chunked_array([arr.slice(0, 2), arr.slice(2, 0), arr.slice(3, 4)])  # offsets
    got = chunk_matrices(col)
    assert [m.shape for m in got] == [(2, DIM), (0, DIM), (4, DIM)]
    np.testing.assert_array_equal(np.concatenate(got), mat[[0, 1, 3, 4, 5, 6]])
    base = np.frombuffer(arr.values.buffers()[1], dtype=np.float32)
    assert all(np.shares_memory(m, base) for m in got if len(m))  # no copies


def test_vector_index_appends_blocks_in_order() -> None:
    rng = np.random.default_rng(1)
    blocks = [rng.standard_normal((n, DIM)).astype(np.float32) for n in (3, 0, 70, 1)]
    vec = VectorIndex(HnswParams(DIM))
    first = vec.append(blocks[:2])
    rest = vec.append(blocks[2:])  # grows past the initial 64 rows
    np.testing.assert_array_equal(first, [0, 1, 2])
    np.testing.assert_array_equal(rest, np.arange(3, 74))
    want = np.concatenate(blocks)
    np.testing.assert_array_equal(vec.vectors(np.arange(74)), want)
    np.testing.assert_allclose(vec._inv_norms[:74], 1 / np.linalg.norm(want, axis=1), rtol=1e-6)
    assert vec.n == vec.n_live == 74


def test_multi_chunk_segments_and_puts_round_trip(tmp_path: Path) -> None:
    """A put of several chunks, and a segment file of several record batches,
    come back exactly (vectors bit for bit), before and after a reopen."""
    parts = [make([f"p{s}-{i}" for i in range(5)], seed=s) for s in range(3)]
    t = pa.concat_tables(parts)
    assert t.column("embedding").num_chunks == 3
    w = WarmTier(tmp_path, DIM, exact_threshold=10**9)
    w.put(t)
    w.close()
    ns_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    more = pa.concat_tables([make([f"q{i}"], seed=10 + i) for i in range(4)])
    write_ipc(ns_dir / "seg-00000009.arrow", more)  # four record batches in one file
    assert pa.ipc.open_file(ns_dir / "seg-00000009.arrow").num_record_batches == 4
    r = WarmTier(tmp_path, DIM, exact_threshold=10**9, read_only=True)
    want = pa.concat_tables([t, more])
    ids = want.column("id").to_pylist()
    got = r.get(ids)
    assert by_id(got) == by_id(want)
    order = {i: n for n, i in enumerate(got.column("id").to_pylist())}
    np.testing.assert_array_equal(vectors(got).view(np.uint32)[[order[i] for i in ids]],
                                  vectors(want).view(np.uint32))  # fmt: skip
    ns = r._ns["a"]
    assert all(p.column(0).num_chunks == 1 for p in ns.parts)
    q = vectors(more)[2]
    assert r.search("a", q, 1, Filter()).column("id")[0].as_py() == "q2"


def test_load_keeps_nothing_in_arrows_pool_and_never_copies_vectors_there(
    tmp_path: Path,
) -> None:
    """Loading copies the payload to malloc and the vectors straight into the
    matrix: Arrow's default pool holds nothing after, and never held the vectors."""
    dim, n = 256, 4_000
    rng = np.random.default_rng(3)
    w = WarmTier(tmp_path, dim)
    for s in range(4):
        emb = rng.standard_normal((n // 4, dim)).astype(np.float32)
        w.put(make([f"m{s}-{i}" for i in range(n // 4)], dim=dim, emb=emb))
    w.close()
    code = textwrap.dedent(f"""
        import json, pyarrow as pa
        from tiermem.tiers.warm import WarmTier
        pool = pa.default_memory_pool()
        before = pool.bytes_allocated()
        tier = WarmTier({str(tmp_path)!r}, {dim}, read_only=True)
        print(json.dumps({{"rows": tier.stats().count, "held": pool.bytes_allocated() - before,
                          "peak": pool.max_memory()}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["rows"] == n
    assert got["held"] < 64 * 1024
    assert got["peak"] < n * dim * 4 // 8  # a copy of the vectors would be 4 MB


def test_many_small_puts_keep_few_payload_parts_and_exact_rows(tmp_path: Path) -> None:
    """Each put is a segment; payload parts merge geometrically (few parts), rows stay exact."""
    tier = WarmTier(tmp_path, DIM)
    tables = [make([f"m{i}-{j}" for j in range(i % 3 + 1)], seed=i) for i in range(120)]
    for t in tables:
        tier.put(t)
    ns = tier._ns["a"]
    assert len(ns.seqs) == 120 and len(ns.parts) <= 6
    sizes = [p.num_rows for p in ns.parts]
    assert sum(sizes) == ns.vec.n and ns.part_starts == list(np.cumsum([0, *sizes[:-1]]))
    want = by_id(pa.concat_tables(tables))
    ids = list(want)
    rng = np.random.default_rng(0)
    for picked in ([ids[5]], list(rng.choice(ids, 10, replace=False)), ids):  # slices, take
        got = by_id(tier.get(picked))
        assert got == {i: want[i] for i in picked}
    tier.close()
    again = WarmTier(tmp_path, DIM)  # reload merges the same way
    assert by_id(again.get(ids)) == want and len(again._ns["a"].parts) <= 6


def test_named_masks_the_payload_and_skips_dead_rows(tmp_path: Path) -> None:
    tier = WarmTier(tmp_path, DIM)
    t = make(
        ["a", "b", "c", "d"],
        kind=["procedural", "procedural", "semantic", "procedural"],
        name=["deploy", "deploy", "deploy", None],
    )
    tier.put(t)
    assert sorted(tier.named("a", "procedural", "deploy")) == ["a", "b"]
    tier.delete(["a"])
    assert tier.named("a", "procedural", "deploy") == ["b"]
    assert tier.named("a", "episodic", "deploy") == [] and tier.named("zz", "procedural", "x") == []
