"""Core benchmark: L1 ingest, L1->L2 move and warm search, each next to a limit.

One run measures, on one synthetic data set (N memories, random unit
float32 vectors, texts of 80-200 chars, small metadata):

1. **Ingest** into L1: `mem.add_many(batch)` in batches of 1,000, with
   precomputed embeddings. Limit: a raw redis-py pipeline
   (transaction=False, one execute per 1,000 commands) doing one HSET per
   memory with the fields L1 stores (id, namespace, kind, text, float32
   embedding bytes, metadata JSON, importance, access_count, pinned,
   version, source_ids, and the created/updated/last-accessed/tiered
   timestamps as integer us), on the same key shape. The limit writes no
   indexes (recency/frequency/kind ZSETs, id directory, version counters)
   and no MULTI/EXEC: the ratio includes their cost. Raw and tiermem
   batches alternate, so both see the same machine noise; the raw keys are
   deleted after each batch (untimed).
2. **Move** L1->L2 of every memory with the engine's crash-safe mover,
   `mem.mover.move("l1", "l2", ids)`, 1,000 ids per call in insertion
   order (namespaces interleaved, as written). No limit: the table gives
   its ratio to the ingest rate of the same run.
3. **Search** over L2, one query at a time, k=10:
   `mem.search(q, namespace=ns, k=10)`. Opened with `search.deep_below=-1`,
   so a search reads L1 (empty by then) and L2 only, never L3 (every
   namespace holds >= 10 memories). Limits on the same partitioned vectors:
   (a) numpy exact per namespace (contiguous float32 matrix, `mat @ q`,
   argpartition top-10, then sort); (b) one usearch `Index(ndim, metric="cos")`
   per namespace, default dtype, `index.search(q, 10)`. The three run
   interleaved per query, after one untimed warm-up query per namespace.
   Recall@10 is tiermem's (and usearch's) top-10 ids against numpy's exact
   top-10.

Namespaces: `--namespaces` of them, sizes Zipf-like, size_i ∝ 1/(i+1)^0.9
(i = 0 for the largest), floored at 10 and scaled so they sum to N; each
memory's namespace is shuffled, so writes interleave tenants. A query picks
a stored memory uniformly (so its namespace with probability ∝ size) and
searches for that memory's vector plus Gaussian noise (expected cosine to
it ~0.89), re-normalised: one clear nearest neighbour, the rest near noise.

How to read it: the machine is shared and noisy, so absolute figures wander
between runs; compare the ratios (tiermem / limit from the same run, from
medians). Rates are memories/s from the median batch time. Latencies are
per-query p50/p99 in ms. A ratio > 1 for latency means tiermem is slower.
BLAS is pinned to one thread unless OPENBLAS_NUM_THREADS is set (see below).

    python -m benchmarks run ingest search --quick   # CI smoke: N 5,000, 20 ns, 100 queries
    python -m benchmarks run ingest search           # N 100,000, 100 ns, 500 queries
    python -m benchmarks.core [--quick] [--set KEY=VALUE]   # standalone, one JSON
"""

from __future__ import annotations

import os

# One query at a time on a small shared host: a multi-threaded BLAS only adds
# contention to a single matrix-vector product (measured here: p50 8 ms instead of
# 0.3 ms for 5k x 384 while the 2 cores were busy). Applies to tiermem's exact
# search and the numpy limit alike; set OPENBLAS_NUM_THREADS to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow
import redis
import usearch
from usearch.index import Index

import tiermem
from benchmarks.runner import git_state

REDIS_URL = "redis://127.0.0.1:6379/0"
BATCH = 1_000
K = 10
ZIPF_S = 0.9
MIN_NS_SIZE = 10
QUERY_NOISE = 0.5  # std of the query noise, relative to the unit vector's norm
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "core.json"
VOCAB = (
    "agent user asked about the project meeting notes deadline budget tea coffee "
    "prefers green blue report draft review merge deploy server memory cache vector "
    "search query tool call result error retry plan step goal summary context window "
    "token model prompt reply calendar email friday monday lunch travel flight hotel"
)
WORDS = VOCAB.split()
# The last run's data, queries, per-query latencies and results (the peers suite
# reuses them: same data, same queries, same process).
LAST: dict[str, Any] = {}


@dataclass
class Data:
    """The synthetic memories: vectors, texts, and namespace of each."""

    vecs: np.ndarray  # [n, dim] unit float32
    texts: list[str]
    ns_of: np.ndarray  # namespace number of each memory
    names: list[str]  # namespace strings by number


# -- data ----------------------------------------------------------------------------


def zipf_sizes(n: int, n_ns: int) -> np.ndarray:
    """Namespace sizes ∝ 1/(i+1)^0.9, each >= 10, summing to n."""
    if n < n_ns * MIN_NS_SIZE:
        raise SystemExit(f"--n {n} is too small for {n_ns} namespaces of >= {MIN_NS_SIZE}")
    w = 1.0 / np.arange(1, n_ns + 1) ** ZIPF_S
    sizes = np.maximum(np.floor(w / w.sum() * n).astype(np.int64), MIN_NS_SIZE)
    sizes[0] += n - sizes.sum()  # rounding and floors: the largest absorbs the difference
    out: np.ndarray = sizes
    return out


def unit(mat: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32."""
    out: np.ndarray = (mat / np.linalg.norm(mat, axis=-1, keepdims=True)).astype(np.float32)
    return out


def make_text(rng: np.random.Generator) -> str:
    """Words up to a length drawn from [80, 200] chars."""
    target = int(rng.integers(80, 201))
    words = rng.choice(WORDS, size=target // 3)
    return " ".join(words)[:target].rstrip()


def make_data(n: int, n_ns: int, dim: int, rng: np.random.Generator) -> Data:
    """N memories over Zipf-sized namespaces, shuffled."""
    sizes = zipf_sizes(n, n_ns)
    ns_of = rng.permutation(np.repeat(np.arange(n_ns), sizes))  # writes interleave tenants
    vecs = unit(rng.standard_normal((n, dim), dtype=np.float32))
    texts = [make_text(rng) for _ in range(n)]
    return Data(vecs, texts, ns_of, [f"bench:ns{i:03d}" for i in range(n_ns)])


def batches(data: Data) -> Iterator[list[dict[str, Any]]]:
    """add_many items, BATCH at a time."""
    n = len(data.texts)
    for start in range(0, n, BATCH):
        yield [
            {
                "text": data.texts[i],
                "namespace": data.names[data.ns_of[i]],
                "kind": "episodic",
                "embedding": data.vecs[i],
                "metadata": {"source": "bench", "turn": i % 50, "lang": "en"},
            }
            for i in range(start, min(start + BATCH, n))
        ]


# -- ingest --------------------------------------------------------------------------


def raw_fields(item: dict[str, Any], now_us: int) -> dict[Any, Any]:
    """The HASH fields L1 stores for a new memory (null fields omitted)."""
    return {
        "id": str(uuid.uuid4()),
        "namespace": item["namespace"],
        "kind": item["kind"],
        "text": item["text"],
        "embedding": item["embedding"].astype("<f4").tobytes(),
        "metadata": json.dumps(item["metadata"], separators=(",", ":"), sort_keys=True),
        "importance": 0.5,
        "created_at": now_us,
        "updated_at": now_us,
        "last_accessed_at": now_us,
        "tiered_at": now_us,
        "access_count": 0,
        "pinned": b"0",
        "version": 1,
        "source_ids": "[]",
    }


def raw_write(client: redis.Redis, prefix: str, batch: list[dict[str, Any]]) -> list[str]:
    """The limit: one pipelined HSET per memory; returns the keys written."""
    now_us = time.time_ns() // 1000
    pipe = client.pipeline(transaction=False)
    keys = []
    for item in batch:
        fields = raw_fields(item, now_us)
        key = f"{prefix}:{{{item['namespace']}}}:m:{fields['id']}"
        pipe.hset(key, mapping=fields)
        keys.append(key)
    pipe.execute()
    return keys


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """SCAN MATCH prefix:* and DEL in batches; returns keys deleted."""
    deleted, chunk = 0, []
    for key in client.scan_iter(match=f"{prefix}:*", count=BATCH):
        chunk.append(key)
        if len(chunk) >= BATCH:
            deleted += client.delete(*chunk)
            chunk = []
    if chunk:
        deleted += client.delete(*chunk)
    return deleted


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_ingest(
    mem: tiermem.Engine, client: redis.Redis, raw_prefix: str, data: Data
) -> dict[str, Any]:
    """Alternate raw-pipeline and add_many batches; returns rates and tiermem ids."""
    raw_s: list[float] = []
    tm_s: list[float] = []
    ids: list[str | None] = []
    for batch in batches(data):
        dt, keys = timed(partial(raw_write, client, raw_prefix, batch))
        raw_s.append(dt)
        client.delete(*keys)
        dt, res = timed(partial(mem.add_many, batch))
        if not res.ok:
            raise SystemExit(f"add_many failed: {next(iter(res.errors.values()))}")
        tm_s.append(dt)
        ids.extend(res.ids)
    delete_prefix(client, raw_prefix)
    return {
        "tiermem_per_s": BATCH / float(np.median(tm_s)),
        "limit_per_s": BATCH / float(np.median(raw_s)),
        "tiermem_total_s": float(sum(tm_s)),
        "limit_total_s": float(sum(raw_s)),
        "tiermem_batch_ms_p10_p50_p90": [float(x) * 1e3 for x in np.percentile(tm_s, [10, 50, 90])],
        "limit_batch_ms_p10_p50_p90": [float(x) * 1e3 for x in np.percentile(raw_s, [10, 50, 90])],
        "ids": ids,
    }


def bench_move(mem: tiermem.Engine, ids: list[str]) -> dict[str, Any]:
    """L1->L2 with the engine's mover, BATCH ids per call."""
    secs = []
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        dt, moved = timed(partial(mem.mover.move, "l1", "l2", chunk))
        if moved != len(chunk):
            raise SystemExit(f"mover moved {moved} of {len(chunk)}")
        secs.append(dt)
    return {
        "per_s": BATCH / float(np.median(secs)),
        "total_s": float(sum(secs)),
        "batch_ms_p10_p50_p90": [float(x) * 1e3 for x in np.percentile(secs, [10, 50, 90])],
    }


# -- search --------------------------------------------------------------------------


def make_queries(data: Data, n_q: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(query vectors, namespace numbers): stored vectors plus noise, re-normalised."""
    src = rng.integers(0, len(data.texts), n_q)
    dim = data.vecs.shape[1]
    noise = rng.standard_normal((n_q, dim), dtype=np.float32) * (QUERY_NOISE / np.sqrt(dim))
    return unit(data.vecs[src] + noise), data.ns_of[src]


def partition(data: Data) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per namespace: (global row numbers, contiguous float32 matrix)."""
    out = []
    for i in range(len(data.names)):
        rows = np.flatnonzero(data.ns_of == i)
        out.append((rows, np.ascontiguousarray(data.vecs[rows])))
    return out


def numpy_top(mat: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact top-K local row numbers, best first."""
    scores = mat @ q
    top = np.argpartition(-scores, K - 1)[:K]
    return top[np.argsort(-scores[top])]


def build_usearch(parts: list[tuple[np.ndarray, np.ndarray]], dim: int) -> list[Index]:
    """One cosine index per namespace (default dtype), keys = local row numbers."""
    indexes = []
    for _, mat in parts:
        index = Index(ndim=dim, metric="cos")
        index.add(np.arange(len(mat), dtype=np.uint64), mat)
        indexes.append(index)
    return indexes


@dataclass
class Searchers:
    """The three ways to answer a query, each returning global row numbers."""

    mem: tiermem.Engine
    data: Data
    row_of: dict[str, int]  # tiermem id -> global row
    parts: list[tuple[np.ndarray, np.ndarray]]
    indexes: list[Index]

    def tiermem(self, q: np.ndarray, ns: int) -> Callable[[], list[int]]:
        def run() -> list[int]:
            hits = self.mem.search(q, namespace=self.data.names[ns], k=K)
            return [self.row_of[h.memory.id] for h in hits]

        return run

    def numpy(self, q: np.ndarray, ns: int) -> Callable[[], list[int]]:
        rows, mat = self.parts[ns]
        return lambda: rows[numpy_top(mat, q)].tolist()

    def usearch(self, q: np.ndarray, ns: int) -> Callable[[], list[int]]:
        rows, index = self.parts[ns][0], self.indexes[ns]
        return lambda: rows[np.asarray(index.search(q, K).keys, dtype=np.int64)].tolist()


METHODS = ("tiermem", "numpy", "usearch")


def run_queries(s: Searchers, queries: np.ndarray, q_ns: np.ndarray) -> dict[str, Any]:
    """Warm up once per namespace, then time the three methods interleaved per query.

    The warm-up is timed too (tiermem only): a namespace's first search pays
    for cache loads and any lazy index build.
    """
    cold = []
    for ns in dict.fromkeys(q_ns.tolist()):
        first = int(np.flatnonzero(q_ns == ns)[0])
        cold.append(timed(s.tiermem(queries[first], ns))[0] * 1e3)
        for m in METHODS[1:]:
            getattr(s, m)(queries[first], ns)()
    lat: dict[str, list[float]] = {m: [] for m in METHODS}
    found: dict[str, list[list[int]]] = {m: [] for m in METHODS}
    for q, ns in zip(queries, q_ns.tolist(), strict=True):
        for m in METHODS:
            dt, rows = timed(getattr(s, m)(q, ns))
            lat[m].append(dt * 1e3)
            found[m].append(rows)
    return {"lat_ms": lat, "found": found, "cold_ms": cold}


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    """Mean |found ∩ truth| / K over queries."""
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def search_figures(res: dict[str, Any]) -> dict[str, Any]:
    """p50/p99 per method, ratios of tiermem to the limits, recalls."""
    out: dict[str, Any] = {}
    for m in METHODS:
        lat = np.asarray(res["lat_ms"][m])
        out[m] = {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}
    for lim in ("numpy", "usearch"):
        for p in ("p50_ms", "p99_ms"):
            out[f"ratio_{p[:3]}_vs_{lim}"] = out["tiermem"][p] / out[lim][p]
    truth = res["found"]["numpy"]
    out["recall_at_10"] = recall(res["found"]["tiermem"], truth)
    out["usearch_recall_at_10"] = recall(res["found"]["usearch"], truth)
    out["tiermem_first_query_ms"] = {
        "p50": float(np.median(res["cold_ms"])),
        "max": float(np.max(res["cold_ms"])),
    }
    return out


def bench_search(
    mem: tiermem.Engine, data: Data, ids: list[str], n_q: int, seed: int
) -> dict[str, Any]:
    """Build the limits, run the queries, summarise."""
    parts = partition(data)
    build_s, indexes = timed(lambda: build_usearch(parts, data.vecs.shape[1]))
    row_of = {id_: i for i, id_ in enumerate(ids)}
    queries, q_ns = make_queries(data, n_q, np.random.default_rng(seed + 1))
    res = run_queries(Searchers(mem, data, row_of, parts, indexes), queries, q_ns)
    LAST.update(data=data, queries=queries, q_ns=q_ns, parts=parts, **res)
    return {**search_figures(res), "usearch_build_s": build_s}


# -- report --------------------------------------------------------------------------


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tiermem": tiermem.__version__,
        "redis-py": redis.__version__,
        "usearch": usearch.__version__,
        "numpy": np.__version__,
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
    }


def num(x: float) -> str:
    """Rates with thousands separators, latencies with 3 significant digits."""
    return f"{x:,.0f}" if x >= 1_000 else f"{x:.3g}"


def markdown(r: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    ing, mv, se = r["ingest"], r["move"], r["search"]
    t, npy, us = se["tiermem"], se["numpy"], se["usearch"]
    rows = [
        ("ingest L1, memories/s", ing["tiermem_per_s"], "redis pipeline", ing["limit_per_s"]),
        ("move L1->L2, memories/s", mv["per_s"], "tiermem ingest", ing["tiermem_per_s"]),
        ("search p50, ms", t["p50_ms"], "numpy exact", npy["p50_ms"]),
        ("search p99, ms", t["p99_ms"], "numpy exact", npy["p99_ms"]),
        ("search p50, ms", t["p50_ms"], "usearch", us["p50_ms"]),
        ("search p99, ms", t["p99_ms"], "usearch", us["p99_ms"]),
    ]
    lines = [
        f"N={r['n']:,} dim={r['dim']} namespaces={r['namespaces']} queries={r['queries']} "
        f"k={K} (search.deep_below=-1: L1+L2 only)",
        "",
        "| measure | tiermem | limit | limit value | tiermem / limit |",
        "|---|---:|---|---:|---:|",
    ]
    lines += [f"| {m} | {num(a)} | {name} | {num(b)} | {a / b:.2f} |" for m, a, name, b in rows]
    lines += [
        f"| recall@10 vs numpy exact | {se['recall_at_10']:.4f} | usearch | "
        f"{se['usearch_recall_at_10']:.4f} | |",
        "",
        f"tiermem first search per namespace (the warm-up, not in the percentiles): p50 "
        f"{num(se['tiermem_first_query_ms']['p50'])} ms, max "
        f"{num(se['tiermem_first_query_ms']['max'])} ms. usearch limit build: "
        f"{se['usearch_build_s']:.1f} s. Move total: {mv['total_s']:.1f} s.",
    ]
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------


def _override(text: str) -> tuple[str, Any]:
    key, eq, value = text.partition("=")
    if not eq:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N 5,000, 20 namespaces, 100 queries")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--namespaces", type=int, default=100)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument(
        "--set",
        type=_override,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for the tiermem store, e.g. l2.expansion_search=256 (repeatable)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.namespaces, args.queries = 5_000, 20, 100
    return args


# No L1 capacity: the default policy caps episodes at 1,000 per namespace in L1 and
# evicts on write, which would mix moves into the ingest figure and leave the
# move step with ids already in L2.
POLICY = {"version": 1, "kinds": {"episodic": {"place": "l1", "l1": {"capacity": None}}}}


def open_store(
    path: str, prefix: str, dim: int, extra: dict[str, Any] | None = None
) -> tiermem.Engine:
    overrides: dict[str, Any] = {"l1.url": REDIS_URL, "l1.prefix": prefix, "embedding.dim": dim}
    overrides["search.deep_below"] = -1.0
    overrides.update(extra or {})
    policy = Path(path) / "bench-policy.json"
    policy.write_text(json.dumps(POLICY))
    return tiermem.open(
        Path(path) / "store",
        embedder=tiermem.HashingEmbedder(dim),
        policy=str(policy),
        **overrides,
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """All three measurements on one data set; Redis keys and temp dir cleaned up."""
    data = make_data(args.n, args.namespaces, args.dim, np.random.default_rng(args.seed))
    client = redis.Redis.from_url(REDIS_URL)
    server = client.info("server")["redis_version"]
    base = f"bench-core:{uuid.uuid4().hex[:12]}"
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            open_store(tmp, f"{base}:tm", args.dim, dict(args.set)) as mem,
        ):
            ingest = bench_ingest(mem, client, f"{base}:raw", data)
            ids = ingest.pop("ids")
            move = bench_move(mem, ids)
            search = bench_search(mem, data, ids, args.queries, args.seed)
    finally:
        delete_prefix(client, base)
        client.close()
    sizes = np.bincount(data.ns_of)
    return {
        "namespace_sizes": {"max": int(sizes.max()), "median": float(np.median(sizes))},
        "redis_server": server,
        "ingest": ingest,
        "move": move,
        "search": search,
    }


def run(quick: bool, out: Path | None = None) -> dict[str, Any]:
    """The suite (ingest + move + search on one data set): the report, not written."""
    return report_for(parse_args(["--quick"] if quick else []))


def report_for(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    report = {
        "benchmark": "core",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "n": args.n,
        "dim": args.dim,
        "namespaces": args.namespaces,
        "queries": args.queries,
        "k": K,
        "seed": args.seed,
        "overrides": dict(args.set),
        "versions": versions(),
        "git": git_state(),
        "openblas_num_threads": os.environ["OPENBLAS_NUM_THREADS"],
        **measure(args),
    }
    report["wall_s"] = time.perf_counter() - t0
    print(markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = report_for(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out} ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
