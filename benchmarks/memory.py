"""Bytes per memory in each tier, next to the raw bytes of its vector and text.

The core suite's data (N random unit 384-d float32 vectors, texts of 80-200
ASCII chars, Zipf-sized namespaces, seed 7) goes through the tiers:

1. `add_many` into L1 (batches of 1,000, no L1 capacity). L1 is RAM in Redis:
   the sum of `MEMORY USAGE key SAMPLES 0` over the store's keys (robust on
   a shared Redis), and the server's `used_memory` delta (what the whole
   server grew by while we wrote: other clients' writes land in it too).
2. L1 -> L2 with the engine's mover (1,000 ids a call), then a `checkpoint`
   (persists the HNSW indexes of namespaces above `l2.exact_threshold`).
   Disk: the Arrow segments, the index files, the rest (tombstones, access
   stats). RAM: a fresh process opens the store and searches every namespace
   once (so each namespace's rows, matrix and index are loaded); the L2 RSS
   is its RSS growth from before `tiermem.open` to after the searches, minus
   the same growth in another fresh process that does the same with an
   empty store (the fixed cost of a store: DuckDB, clients, lazy imports).
   Then the store's probe runs the core suite's queries (20,000; quick: 200,
   one at a time, k=10) and reports what the process grew by per memory:
   what reads add (the writer's hit log of L2/L3 memories read, for promotion).
3. L2 -> L3 with the mover: zstd Parquet files (+ manifest) on disk.

Raw = N x (dim x 4 bytes of float32 vector + UTF-8 text bytes). Goal: L2 RSS
<= 1.5x raw. Metadata ({"source", "turn", "lang"}), ids and timestamps are
stored too and are not in raw: the ratio includes them.

    python -m benchmarks run memory [--quick]     # N 100,000 (quick: 2,000)
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import redis

from benchmarks import core

DIM = 384


def rss() -> int:
    """This process's resident set size in bytes (Linux /proc; psutil elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return int(psutil.Process().memory_info().rss)


def rss_parts() -> dict[str, int]:
    """RSS split as Linux counts it: anonymous (heap, Arrow's pool, numpy) and
    file-backed (pages of memory-mapped files the process has touched: L2's
    segments; the page cache, reclaimable under pressure). Empty elsewhere."""
    names = {"RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    fields = (line.split() for line in lines if line.split(":")[0] + ":" in names)
    return {names[f[0]]: int(f[1]) * 1024 for f in fields}


def tree_bytes(root: Path) -> dict[str, int]:
    """Bytes under root by kind of file: arrow segments, index, parquet, other."""
    out = {"segments": 0, "index": 0, "parquet": 0, "other": 0, "files": 0}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        size = path.stat().st_size
        name = path.name
        out["files"] += 1
        if name.startswith("seg-") and name.endswith(".arrow"):
            out["segments"] += size
        elif name.startswith("index."):
            out["index"] += size
        elif name.endswith(".parquet") and "/data/" in path.as_posix():
            out["parquet"] += size
        else:
            out["other"] += size
    return out


def redis_usage(client: redis.Redis, prefix: str) -> tuple[int, int]:
    """(keys, sum of MEMORY USAGE) over prefix:*."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1_000))
    total = 0
    for start in range(0, len(keys), 1_000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 1_000]:
            pipe.memory_usage(key, samples=0)
        total += sum(int(x or 0) for x in pipe.execute())
    return len(keys), total


def probe(path: str, prefix: str, n_ns: int, queries: str = "") -> dict[str, Any]:
    """In a fresh process: RSS before open, after open, after one search per namespace,
    and after the queries in file `queries` (`save_queries`), if given."""
    import tiermem  # noqa: F401 -- imported before the baseline on purpose

    # read before the baseline: the arrays, not the data set they come from. An
    # NpzFile reads an array when it is indexed: indexing it in the loop counted
    # the 20,000 query vectors (30.7 MB) as growth (perf-log, tenth pass)
    asked = None
    if queries:
        with np.load(queries) as npz:
            asked = (np.array(npz["vectors"]), npz["namespaces"].tolist())
    gc.collect()
    before, parts_before = rss(), rss_parts()
    mem = core.open_store(path, prefix, DIM)
    opened = rss()
    q = core.unit(np.random.default_rng(0).standard_normal(DIM, dtype=np.float32))
    t0 = time.perf_counter()
    for i in range(n_ns):
        mem.search(q, namespace=f"bench:ns{i:03d}", k=core.K)
    load_s = time.perf_counter() - t0
    gc.collect()
    loaded, parts_loaded = rss(), rss_parts()
    searched, parts_searched, n_q = loaded, parts_loaded, 0
    if asked is not None:
        for vec, ns in zip(*asked, strict=True):
            mem.search(vec, namespace=f"bench:ns{ns:03d}", k=core.K)
            n_q += 1
        gc.collect()
        searched, parts_searched = rss(), rss_parts()
    mem.close()
    return {"rss_before_open": before, "rss_after_open": opened, "rss_loaded": loaded,
            "first_search_all_ns_s": load_s, "queries": n_q,
            "rss_after_queries": searched, "parts_before_open": parts_before,
            "parts_loaded": parts_loaded, "parts_after_queries": parts_searched}  # fmt: skip


def save_queries(data: core.Data, n_q: int, path: Path) -> str:
    """The core suite's queries (vectors and namespace numbers) in an .npz file."""
    vectors, namespaces = core.make_queries(data, n_q, np.random.default_rng(8))
    np.savez(path, vectors=vectors, namespaces=namespaces)
    return str(path)


def run_probe(path: Path, prefix: str, n_ns: int, queries: str = "") -> dict[str, Any]:
    args = ["--probe", str(path), prefix, str(n_ns), queries]
    p = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", *args],
        capture_output=True, text=True, check=False, timeout=1_800,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )  # fmt: skip
    if p.returncode != 0:
        raise RuntimeError(f"L2 probe failed: {p.stderr.strip()[-800:]}")
    return dict(json.loads(p.stdout.strip().splitlines()[-1]))


def move_all(mem: Any, src: str, dst: str, ids: list[str]) -> float:
    t0 = time.perf_counter()
    for start in range(0, len(ids), core.BATCH):
        chunk = ids[start : start + core.BATCH]
        moved = mem.mover.move(src, dst, chunk)
        if moved != len(chunk):
            raise RuntimeError(f"{src}->{dst}: mover moved {moved} of {len(chunk)}")
    return time.perf_counter() - t0


def run(quick: bool, out: Path | None = None) -> dict[str, Any]:
    n, n_ns, n_q = (2_000, 20, 200) if quick else (100_000, 100, 20_000)
    data = core.make_data(n, n_ns, DIM, np.random.default_rng(7))
    raw_vec = n * DIM * 4
    raw_text = sum(len(t.encode()) for t in data.texts)
    raw = raw_vec + raw_text
    client = redis.Redis.from_url(core.REDIS_URL)
    prefix = f"bench-mem:{uuid.uuid4().hex[:12]}"
    tmp = Path(tempfile.mkdtemp(prefix="tiermem-bench-mem-"))
    res: dict[str, Any] = {"n": n, "namespaces": n_ns, "dim": DIM}
    try:
        gc.collect()
        rss0, used0 = rss(), int(client.info("memory")["used_memory"])
        with core.open_store(str(tmp), prefix, DIM) as mem:
            ids: list[str] = []
            for batch in core.batches(data):
                r = mem.add_many(batch)
                if not r.ok:
                    raise RuntimeError(f"add_many failed: {next(iter(r.errors.values()))}")
                ids.extend(i for i in r.ids if i is not None)
            gc.collect()
            rss1, used1 = rss(), int(client.info("memory")["used_memory"])
            keys, usage = redis_usage(client, prefix)
            move12 = move_all(mem, "l1", "l2", ids)
            mem.run("checkpoint")
            keys_after, usage_after = redis_usage(client, prefix)
        l2_disk = tree_bytes(tmp / "store" / "l2")
        pr = run_probe(tmp, prefix, n_ns, save_queries(data, n_q, tmp / "queries.npz"))
        (tmp / "empty").mkdir()
        pr0 = run_probe(tmp / "empty", f"{prefix}:empty", n_ns)
        with core.open_store(str(tmp), prefix, DIM) as mem:
            move23 = move_all(mem, "l2", "l3", ids)
        l3_disk = tree_bytes(tmp / "store" / "l3")
    finally:
        core.delete_prefix(client, prefix)
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)
    l2_rss = (pr["rss_loaded"] - pr["rss_before_open"]) - (
        pr0["rss_loaded"] - pr0["rss_before_open"]
    )
    l2_bytes = l2_disk["segments"] + l2_disk["index"] + l2_disk["other"]
    l3_bytes = l3_disk["parquet"] + l3_disk["other"]
    res.update(
        raw={"vector_bytes": raw_vec, "text_bytes": raw_text, "total": raw, "per_memory": raw / n},
        l1={
            "keys": keys,
            "memory_usage_sum": usage,
            "per_memory": usage / n,
            "ratio_to_raw": usage / raw,
            "used_memory_delta": used1 - used0,
            "used_memory_delta_per_memory": (used1 - used0) / n,
            "keys_left_after_move": keys_after,
            "memory_usage_after_move": usage_after,
            "writer_rss_delta": rss1 - rss0,
            "writer_rss_delta_per_memory": (rss1 - rss0) / n,
        },
        l2={
            "disk": l2_disk,
            "disk_per_memory": l2_bytes / n,
            "disk_ratio_to_raw": l2_bytes / raw,
            "rss": l2_rss,
            "rss_per_memory": l2_rss / n,
            "rss_ratio_to_raw": l2_rss / raw,
            "queries": n_q,
            "rss_growth_queries_per_memory": (pr["rss_after_queries"] - pr["rss_loaded"]) / n,
            "rss_parts_per_memory": _parts_per_memory(pr, pr0, n),
            "probe": pr,
            "probe_empty_store": pr0,
            "move_l1_l2_s": move12,
        },
        l3={
            "disk": l3_disk,
            "disk_per_memory": l3_bytes / n,
            "disk_ratio_to_raw": l3_bytes / raw,
            "move_l2_l3_s": move23,
        },
    )
    return res


def _parts_per_memory(pr: dict[str, Any], pr0: dict[str, Any], n: int) -> dict[str, float]:
    """L2's RSS per memory by kind (anon, file): at load (net of the empty store's
    probe, as the RSS row) and grown over the queries."""
    out: dict[str, float] = {}
    for kind in pr["parts_loaded"]:
        at_load = pr["parts_loaded"][kind] - pr["parts_before_open"][kind]
        at_load -= pr0["parts_loaded"][kind] - pr0["parts_before_open"][kind]
        out[f"{kind}_at_load"] = at_load / n
        grown = pr["parts_after_queries"][kind] - pr["parts_loaded"][kind]
        out[f"{kind}_growth_queries"] = grown / n
    return out


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--probe":
        print(json.dumps(probe(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])))
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=2))
