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

Then growth: one more episode a topic (its first episode's vector plus
`NOISE` once more) is added, the clock moves 2 h, and a second `run("consolidate")`
is timed: each joins its topic's semantic memory, which gets a new version
re-summarised and re-averaged from all its sources (most of them in L3 by
then). Its limit is the same raw work on the new episodes.

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

import tiermem
from benchmarks.lifecycle import Clock, drop_keys, filled_store
from tiermem import schema
from tiermem.model import JobReport

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


def joiners(items: list[dict[str, Any]], seed: int = 2) -> list[dict[str, Any]]:
    """One new episode a topic: its first episode's vector plus `NOISE`, re-normalised."""
    rng = np.random.default_rng(seed)
    first = items[::TOPIC]
    vecs = np.stack([it["embedding"] for it in first])
    vecs = vecs + rng.standard_normal(vecs.shape).astype(np.float32) * NOISE
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [
        {"text": f"again: {it['text']}", "namespace": it["namespace"], "embedding": v}
        for it, v in zip(first, vecs, strict=True)
    ]


def timed_run(mem: tiermem.Engine, clock: Clock) -> tuple[float, JobReport]:
    """Seconds and report of one `run("consolidate")`, 2 h after the adds."""
    clock.now += timedelta(hours=2)
    t0 = time.perf_counter()
    report = mem.run("consolidate")
    return time.perf_counter() - t0, report


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
        seconds, report = timed_run(mem, clock)
        stats = mem.stats()
        created = sum(1 for _ in mem.scan(kinds=["semantic"]))
        more = joiners(items)
        for start in range(0, len(more), 1000):
            mem.add_many(more[start : start + 1000])
        new = schema.concat(mem.backends.l1.scan(), dim)
        new = new.filter(pa.compute.equal(new["kind"], "episodic"))
        grow_s, grow = timed_run(mem, clock)
        grown = sum(1 for m in mem.scan(kinds=["semantic"]) if m.version > 1)
        mem.close()
        lim = limit(table, tmp / "raw")
        grow_lim = limit(new, tmp / "raw-grow")
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
        "grow": {
            "episodes": len(more),
            "merged": grow.merged,
            "grown": grown,
            "errors": grow.errors,
            "seconds": grow_s,
            "per_s": grow.merged / grow_s,
            "limit_per_s": len(more) / grow_lim,
            "ratio": (grow.merged / grow_s) / (len(more) / grow_lim),
        },
    }
