"""Throughput of `run("consolidate")`, next to the raw work of its destination.

N episodes (~120-char texts, 384-d vectors) over `namespaces` namespaces, in
topics of `TOPIC` episodes: each topic a random unit centre, each episode
the centre plus Gaussian noise of `NOISE` per dimension, re-normalised
(cosine to its centre ~0.96, to another episode of its topic ~0.92, to any
other episode ~0). A topic's episodes share a namespace. All are added to
L1, the injected clock moves 2 h (past `min_age`), and one
`run("consolidate")` is timed: with the policy below every topic becomes
one semantic memory and its episodes move to L3.

Limit, on the same rows, the raw work of what consolidation produces, per
namespace: usearch `add` of its vectors (the neighbour structure clustering
needs) and a zstd Parquet write of its rows, fsynced (where the episodes
go). It leaves out reading L1, clustering itself, summarising and the
semantic memories' writes, so it is an upper bound, not a target.

    python -m benchmarks run lifecycle [--quick]   # N 100,000 (quick: 2,000)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from usearch.index import Index

from benchmarks.lifecycle import drop_keys, filled_store
from tiermem import schema

TOPIC = 10  # episodes per topic: each topic becomes one semantic memory
NOISE = 0.015  # per-dimension std of an episode around its topic's centre
POLICY = """version: 1
kinds:
  episodic:
    l1: {capacity: null}
    consolidate: {every: 6h, similarity: 0.85, min_cluster: 3, min_age: 1h,
                  into: semantic, sources_to: l3}
  semantic:
    l1: {capacity: null}
"""


def episodes(n: int, namespaces: int, dim: int, seed: int = 1) -> list[dict[str, Any]]:
    """n episodes in topics of `TOPIC`; topic t lives in namespace t % namespaces."""
    rng = np.random.default_rng(seed)
    topics = -(-n // TOPIC)
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    topic = np.arange(n) // TOPIC
    vecs = centres[topic] / np.linalg.norm(centres[topic], axis=1, keepdims=True)
    vecs = vecs + rng.standard_normal((n, dim)).astype(np.float32) * NOISE
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [
        {
            "text": f"episode {i} of topic {t}: " + "x" * 100,
            "namespace": f"tenant:{t % namespaces}",
            "embedding": vecs[i],
        }
        for i, t in enumerate(topic.tolist())
    ]


def limit(table: pa.Table, root: Path) -> float:
    """Seconds for usearch add + a zstd Parquet write (fsynced), per namespace."""
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for i, ns in enumerate(sorted(set(table["namespace"].to_pylist()))):
        part = table.filter(pa.compute.equal(table["namespace"], ns))
        mat = schema.vectors(part)
        Index(ndim=mat.shape[1], metric="cos").add(np.arange(len(mat)), mat)
        path = root / f"part-{i}.parquet"
        pq.write_table(part, path, compression="zstd")
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
    return time.perf_counter() - started


def measure(n: int, namespaces: int, dim: int, url: str) -> dict[str, Any]:
    """One timed `run("consolidate")` over n episodes, and the limit on the same rows."""
    tmp = Path(tempfile.mkdtemp(prefix="tm-bench-cons-"))
    prefix = f"bench-cons:{uuid.uuid4().hex[:8]}"
    try:
        items = episodes(n, namespaces, dim)
        mem, clock, table = filled_store(tmp, POLICY, items, url, prefix, dim)
        clock.now += timedelta(hours=2)
        t0 = time.perf_counter()
        report = mem.run("consolidate")
        seconds = time.perf_counter() - t0
        stats = mem.stats()
        created = sum(1 for _ in mem.scan(kinds=["semantic"]))
        mem.close()
        lim = limit(table, tmp / "raw")
    finally:
        drop_keys(url, prefix)
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "n": n,
        "topics": -(-n // TOPIC),
        "consolidated": report.moved,
        "semantic_created": created,
        "l3_after": stats.tiers["l3"].count,
        "errors": report.errors,
        "seconds": seconds,
        "per_s": report.moved / seconds,
        "limit_per_s": n / lim,
        "ratio": (report.moved / seconds) / (n / lim),
    }
