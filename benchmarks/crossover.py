"""Where does HNSW beat exact search? Sets WarmTier's default exact_threshold.

For each namespace size, measures the per-query p50 latency of the two L2
search paths as the tier runs them (`VectorIndex.exact`: one numpy matmul +
argpartition; `VectorIndex.search_ann`: usearch HNSW, bf16, then exact
rescoring of the hits) and HNSW recall@10 against exact. One query at a
time, one thread, like an agent's lookup. Vectors are clustered Gaussian
(200 centres), unit-normalised: closer to sentence embeddings than uniform
noise, which is the worst case for HNSW.

    python benchmarks/crossover.py --dim 384 --sizes 1000,2000,5000,10000,20000,50000

Results (2 cores; the table is also next to DEFAULT_EXACT_THRESHOLD in
tiermem/tiers/warm.py, with why the default is 20,000): crossover at
10,000 rows; recall@10 0.985-1.000. Exact latency is noisy when other
processes share the cores (BLAS threads).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from tiermem.tiers.warm_index import HnswParams, VectorIndex


def normalise(mat: np.ndarray) -> np.ndarray:
    """Each row of `mat` scaled to unit length, as float32."""
    mat = np.asarray(mat, dtype=np.float32)
    out: np.ndarray = mat / np.linalg.norm(mat, axis=1, keepdims=True)
    return out


def clustered(rng: np.random.Generator, n: int, dim: int, centres: np.ndarray) -> np.ndarray:
    """`n` unit vectors scattered around random centres."""
    pick = rng.integers(0, len(centres), n)
    return normalise(centres[pick] + 0.6 * rng.standard_normal((n, dim)) / np.sqrt(dim))


def p50_ms(fn: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    """Median wall time of fn(q) over the queries, in ms."""
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def measure(n: int, dim: int, n_queries: int, k: int, seed: int) -> dict[str, float]:
    """Latencies, recall and build rate at one namespace size."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((200, dim)))
    vec = VectorIndex(HnswParams(dim))
    vec.append([clustered(rng, n, dim, centres)])  # one block of n rows
    queries = clustered(rng, n_queries, dim, centres)
    everything = np.arange(n, dtype=np.int64)
    t0 = time.perf_counter()
    vec.build_ann()
    build_s = time.perf_counter() - t0
    exact_ms = p50_ms(lambda q: vec.exact(q, everything, k), queries)
    ann_ms = p50_ms(lambda q: vec.search_ann(q, k), queries)
    hits = 0
    for q in queries:
        truth = set(vec.exact(q, everything, k)[0].tolist())
        hits += len(truth & set(vec.search_ann(q, k)[0].tolist()))
    return {
        "exact": exact_ms,
        "hnsw": ann_ms,
        "recall": hits / (k * n_queries),
        "build": n / build_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--sizes", default="1000,2000,5000,10000,20000,50000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print("| rows | exact p50 ms | HNSW p50 ms | HNSW recall@10 | HNSW build rows/s |")
    print("|---:|---:|---:|---:|---:|")
    crossover = None
    for n in sizes:
        r = measure(n, args.dim, args.queries, args.k, args.seed)
        print(
            f"| {n:,} | {r['exact']:.3f} | {r['hnsw']:.3f} | {r['recall']:.3f} "
            f"| {r['build']:,.0f} |",
            flush=True,
        )
        if crossover is None and r["hnsw"] < r["exact"]:
            crossover = n
    print(f"\ncrossover (first size where HNSW p50 < exact p50): {crossover}")


if __name__ == "__main__":
    main()
