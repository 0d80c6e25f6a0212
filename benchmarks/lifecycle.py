"""Throughput of `run("demote")`: L1 -> L2 and L2 -> L3, next to raw limits.

N memories (random unit 384-d vectors, ~120-char texts) over `--namespaces`
namespaces are added to L1 with a policy whose only rule is `idle: 1h` in
L1 and L2 (no capacity). The injected clock then moves 2 h (everything in
L1 is idle: one `run("demote")` moves all of it to L2), then 2 days with an
L2 idle of 1 d (the next `run("demote")` moves all of it to L3).

Limits measured in the same run, on the same rows:
- L1 -> L2: the raw work of the destination, Arrow IPC segment writes
  (one file per namespace, fsynced), plus, for namespaces above the exact
  threshold, usearch `add` of their vectors;
- L2 -> L3: raw `pyarrow.parquet.write_table` (zstd) of the same rows, one
  file per namespace, fsynced.

The ratio is tiermem / limit (memories per second); a move also reads the
source and deletes from it, so the limit is an upper bound, not a target.
For L1 -> L2 a second limit adds that source work, done raw: pipelined
redis-py HGETALL of the same hashes (the bytes L1 stores) before the
destination writes and pipelined DEL after (`full_path_limit_per_s`).

The suite (`run`) then times `run("consolidate")` on its own store of N
clustered episodes, next to its own limit (`benchmarks/consolidation.py`).

    python -m benchmarks run lifecycle [--quick]     # N 100,000 (quick: 2,000)
    python -m benchmarks.lifecycle [--quick] [--n 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import redis
from usearch.index import Index

import tiermem
from tiermem import schema
from tiermem.tiers import hot_codec

POLICY = "version: 1\nkinds:\n  episodic:\n    l1: {capacity: null, idle: 1h}\n    l2: {idle: 1d}\n"
OUT = Path(__file__).parent / "results" / "lifecycle.json"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _items(n: int, namespaces: int, dim: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [
        {
            "text": f"memory {i}: " + "x" * 110,
            "namespace": f"tenant:{i % namespaces}",
            "embedding": vecs[i],
        }
        for i in range(n)
    ]


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def limit_l2(table: pa.Table, root: Path, threshold: int) -> float:
    """Seconds for raw Arrow IPC segment writes per namespace (+ usearch add above threshold)."""
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for i, ns in enumerate(sorted(set(table["namespace"].to_pylist()))):
        part = table.filter(pa.compute.equal(table["namespace"], ns))
        path = root / f"seg-{i}.arrow"
        with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, part.schema) as w:
            w.write_table(part)
        _fsync(path)
        if part.num_rows >= threshold:
            index = Index(ndim=schema.vectors(part).shape[1], metric="cos")
            index.add(np.arange(part.num_rows), schema.vectors(part))
    return time.perf_counter() - started


def limit_l1_source(table: pa.Table, client: redis.Redis, prefix: str) -> float:
    """Seconds for the raw source side of L1 -> L2: read every hash, then delete it.

    The hashes (the same fields and bytes L1 stores) are written untimed first.
    """
    cols = hot_codec.encode_columns(table)
    keys = [f"{prefix}:raw:{i}" for i in cols["id"]]
    names = list(cols)
    for start in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + 1000, len(keys))):
            fields: dict[Any, Any] = {n: cols[n][i] for n in names if cols[n][i] is not None}
            pipe.hset(keys[i], mapping=fields)
        pipe.execute()
    started = time.perf_counter()
    for start in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 1000]:
            pipe.hgetall(key)
        pipe.execute()
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    return time.perf_counter() - started


def limit_l3(table: pa.Table, root: Path) -> float:
    """Seconds for raw zstd Parquet writes, one fsynced file per namespace."""
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for i, ns in enumerate(sorted(set(table["namespace"].to_pylist()))):
        part = table.filter(pa.compute.equal(table["namespace"], ns))
        path = root / f"part-{i}.parquet"
        pq.write_table(part, path, compression="zstd")
        _fsync(path)
    return time.perf_counter() - started


def filled_store(
    tmp: Path, policy: str, items: list[dict[str, Any]], url: str, prefix: str, dim: int
) -> tuple[tiermem.Engine, Clock, pa.Table]:
    """A store under `tmp` with this policy and an injected clock, `items` added
    1,000 at a time; and L1's rows as one table (what the limits work on)."""
    (tmp / "policy.yaml").write_text(policy)
    clock = Clock()
    overrides: dict[str, Any] = {"l1.url": url, "l1.prefix": prefix, "embedding.dim": dim}
    mem = tiermem.open(
        tmp / "store",
        policy=str(tmp / "policy.yaml"),
        clock=clock,
        embedder=tiermem.HashingEmbedder(dim),
        **overrides,
    )
    for start in range(0, len(items), 1000):
        mem.add_many(items[start : start + 1000])
    return mem, clock, schema.concat(mem.backends.l1.scan(), dim)


def drop_keys(url: str, prefix: str) -> None:
    """Delete every Redis key under `prefix`."""
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])


def measure(n: int, namespaces: int, dim: int, url: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="tm-bench-life-"))
    prefix = f"bench-life:{uuid.uuid4().hex[:8]}"
    try:
        mem, clock, table = filled_store(tmp, POLICY, _items(n, namespaces, dim), url, prefix, dim)
        clock.now += timedelta(hours=2)
        t0 = time.perf_counter()
        r1 = mem.run("demote")
        s1 = time.perf_counter() - t0
        clock.now += timedelta(days=2)
        t0 = time.perf_counter()
        r2 = mem.run("demote")
        s2 = time.perf_counter() - t0
        threshold = mem.config.l2.exact_threshold
        mem.close()
        lim2 = limit_l2(table, tmp / "raw-l2", threshold)
        lim3 = limit_l3(table, tmp / "raw-l3")
        with redis.Redis.from_url(url) as client:
            src = limit_l1_source(table, client, prefix)
    finally:
        drop_keys(url, prefix)
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "n": n,
        "namespaces": namespaces,
        "dim": dim,
        "l1_to_l2": {
            "moved": r1.moved,
            "seconds": s1,
            "per_s": r1.moved / s1,
            "limit_per_s": n / lim2,
            "ratio": (r1.moved / s1) / (n / lim2),
            "full_path_limit_per_s": n / (src + lim2),
            "ratio_full_path": (r1.moved / s1) / (n / (src + lim2)),
        },
        "l2_to_l3": {
            "moved": r2.moved,
            "seconds": s2,
            "per_s": r2.moved / s2,
            "limit_per_s": n / lim3,
            "ratio": (r2.moved / s2) / (n / lim3),
        },
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run(quick: bool, out: Path | None = None) -> dict[str, Any]:
    """The suite: N 100,000 over 100 namespaces (quick: 2,000 over 20), 384-d, demote
    then consolidate (`benchmarks/consolidation.py`, its own store); not written."""
    n, url = (2_000 if quick else 100_000), "redis://127.0.0.1:6379/0"
    namespaces = 20 if quick else 100
    from benchmarks import consolidation  # it builds on this module's helpers

    res = measure(n, namespaces, 384, url)
    return res | {"consolidate": consolidation.measure(n, namespaces, 384, url)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 memories (CI smoke)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    n = 2_000 if args.quick else args.n
    res = measure(n, min(args.namespaces, n), args.dim, args.url)
    print(f"| move | tiermem memories/s | limit memories/s | ratio |  (N={n})")
    print("|---|---:|---:|---:|")
    for key, label in (("l1_to_l2", "L1 -> L2"), ("l2_to_l3", "L2 -> L3")):
        r = res[key]
        print(f"| {label} | {r['per_s']:,.0f} | {r['limit_per_s']:,.0f} | {r['ratio']:.2f} |")
        if "full_path_limit_per_s" in r:
            lim, ratio = r["full_path_limit_per_s"], r["ratio_full_path"]
            print(f"| {label} (limit with raw source read + delete) | | {lim:,.0f} | {ratio:.2f} |")
    if not args.quick:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
