"""Trace replay through a real engine with the default policy: hit ratio per tier.

`benchmarks/hitratio.py` scores eviction selectors in a simulated cache; this
replays the same traces through `tiermem` itself: real Redis (L1), real
usearch+Arrow files (L2) and zstd Parquet (L3), `policy="default"`
(policies/default.yaml), in ONE namespace, so the episodic ``l1.capacity``
(1,000 per namespace) is the cache's capacity.

Per request of a trace's key:

- first sight: ``mem.add`` of a short text with a precomputed vector (random
  unit vectors, 32-d: the vectors play no part in placement) -- a miss;
- later: ``mem.get(id)``, counted under the tier it was read from
  (`Memory.tier` of what it returns is the tier the engine found it in, hot
  to cold: `EngineCore._find`). The default policy's ``promote.on_read: 1``
  makes that read bring an L2 memory into L1 at once (job "promote-on-read"
  in the events log), evicting from a full L1 as an add does.

Time model (an injected clock): the clock is the trace's own time. Zipf
traces are one request per second (so the default ``idle: 1h`` demotion
fires); chitchat carries its utterances' timestamps. Every `EVERY` (10
simulated minutes, boundaries counted from the trace's first request)
``mem.run("demote")`` then ``mem.run("promote")`` run at the boundary's
time, before the first request at or after it. In a quiet stretch with
several boundaries only the first and the last run: nothing is accessed in
between, so the runs between would find a subset of what the last one finds
(the idle rules only grow with time). The worker's defaults are finer
(demote 5 min, promote 1 min); 10 min keeps the replay quick.

Moves: each run's `JobReport.moved` and `.seconds`, by job (moves/s = moved /
the jobs' own seconds); plus the moves `add` made itself when L1 went over
capacity (``on_full: evict``, job "evict" in the events log) and the
read-through promotions (job "promote-on-read"); neither has seconds of its
own: they are inside the adds and gets.

Reference: Belady's MIN (`hitratio.belady`) at the same capacity: the best
any L1 of that size could do; the first sight of a key is a miss in both.
With read-through the engine's L1 is a demand cache like the one
`hitratio.py` simulates, with three differences that cost it hit ratio: an
L1 over capacity evicts down to 90% of it (`capacity.EVICT_TO`: one
eviction pass per tenth of the capacity, not per read), ``idle: 1h``
demotes what an hour (3,600 Zipf requests) did not read, and the promote
and demote jobs run between requests.

On the Zipf traces (independent requests) the static oracle, the capacity's
most requested keys held throughout (`hitratio.static_oracle`), bounds what
an online policy can expect; where it is under 0.9x Belady (zipf-0.8 here:
0.86x) the 0.9x goal cannot be reached, and L1 / static oracle says how near
the engine is to what can be. The chat trace has no such bound.

Traces: full: Zipf 0.8 and 1.0 (10,000 keys) and chitchat, each cut to
`REQUESTS` requests (~1-1.5k requests/s through the engine on 2 shared cores:
~1 min a trace); quick (CI): 4,000 requests over 20,000 Zipf keys (more
distinct keys than the capacity) and the first 4,000 utterances of chitchat.

    python -m benchmarks run tiers [--quick]   # with the selector simulation
    python -m benchmarks.replay [--quick]      # the replay alone, a table
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

import tiermem
from benchmarks import hitratio
from benchmarks.lifecycle import Clock, drop_keys

URL = "redis://127.0.0.1:6379/0"
NAMESPACE = "replay"
DIM = 32
EVERY = timedelta(minutes=10)
JOBS = ("demote", "promote")
REQUESTS = 50_000  # per trace, full run
QUICK_REQUESTS = 4_000
SERVED = ("miss", "l1", "l2", "l3")


@dataclass
class Tally:
    """What a replay counted: requests by where they were served, and job runs."""

    served: Counter[str] = field(default_factory=Counter)
    moved: Counter[str] = field(default_factory=Counter)
    job_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(JOBS, 0.0))
    runs: int = 0
    get_seconds: float = 0.0
    add_seconds: float = 0.0


# -- time ----------------------------------------------------------------------------


def boundaries(start: datetime, prev: datetime, now: datetime) -> list[datetime]:
    """Job times in (prev, now]: multiples of EVERY after `start`, first and last only."""
    first = start + EVERY * ((prev - start) // EVERY + 1)
    if first > now:
        return []
    last = start + EVERY * ((now - start) // EVERY)
    return [first] if last == first else [first, last]


# -- the replay ----------------------------------------------------------------------


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    vecs = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs


def run_jobs(mem: tiermem.Engine, clock: Clock, at: datetime, tally: Tally) -> None:
    """One scheduler tick at `at`: demote, then promote (what demote freed, promote fills)."""
    clock.now = at
    for job in JOBS:
        report = mem.run(job)
        tally.moved[job] += report.moved
        tally.job_seconds[job] += report.seconds
    tally.runs += 1


def serve(
    mem: tiermem.Engine, key: str, ids: dict[str, str], vecs: Iterator[np.ndarray], t: Tally
) -> None:
    """One request: add on first sight (a miss, with the next vector), else get and
    count the tier read from."""
    started = time.perf_counter()
    if key in ids:
        t.served[mem.get(ids[key]).tier] += 1
        t.get_seconds += time.perf_counter() - started
        return
    ids[key] = mem.add(f"memory of {key}", namespace=NAMESPACE, embedding=next(vecs)).id
    t.served["miss"] += 1
    t.add_seconds += time.perf_counter() - started


def replay(mem: tiermem.Engine, clock: Clock, trace: hitratio.Trace) -> Tally:
    """Replay `trace` through `mem`, the clock following the trace's times."""
    tally, ids = Tally(), dict[str, str]()
    vecs = iter(unit_vectors(trace.distinct, DIM))
    start = prev = trace.times[0]
    for key, now in zip(trace.keys, trace.times, strict=True):
        for at in boundaries(start, prev, now):
            run_jobs(mem, clock, at, tally)
        clock.now = prev = now
        serve(mem, key, ids, vecs, tally)
    return tally


def event_moves(mem: tiermem.Engine) -> dict[str, int]:
    """Moves by job from the engine's events log (incl. evictions made by `add`)."""
    rows = mem.sql("SELECT job, count(*) AS n FROM events WHERE action = 'move' GROUP BY job")
    return {r["job"]: r["n"] for r in rows.to_pylist()}


def open_store(path: Path, url: str, prefix: str, policy: str, clock: Clock) -> tiermem.Engine:
    overrides: dict[str, Any] = {"l1.url": url, "l1.prefix": prefix, "embedding.dim": DIM}
    embedder = tiermem.HashingEmbedder(DIM)  # never called: every add brings its vector
    return tiermem.open(path, policy=policy, clock=clock, embedder=embedder, **overrides)


@contextmanager
def store(
    url: str, policy: str, prefix: str | None = None
) -> Iterator[tuple[tiermem.Engine, Clock]]:
    """A fresh store in a temporary dir on its own Redis prefix, both removed after."""
    tmp = Path(tempfile.mkdtemp(prefix="tm-bench-replay-"))
    prefix = prefix or f"bench-replay:{uuid.uuid4().hex[:8]}"
    clock = Clock()
    try:
        with open_store(tmp / "store", url, prefix, policy, clock) as mem:
            yield mem, clock
    finally:
        drop_keys(url, prefix)
        shutil.rmtree(tmp, ignore_errors=True)


def replay_trace(
    trace: hitratio.Trace, url: str = URL, policy: str = "default", prefix: str | None = None
) -> dict[str, Any]:
    """One trace through a fresh engine: shares per tier, L1 vs Belady, moves."""
    with store(url, policy, prefix) as (mem, clock):
        capacity = mem.policy.for_kind("episodic").l1.capacity
        started = time.perf_counter()
        tally = replay(mem, clock, trace)
        wall = time.perf_counter() - started
        by_job = event_moves(mem)
    if capacity is None:
        raise ValueError("the policy's episodic L1 has no capacity: nothing to compare")
    return summary(trace, tally, capacity, wall, by_job)


def summary(
    trace: hitratio.Trace, t: Tally, capacity: int, wall: float, events: dict[str, int]
) -> dict[str, Any]:
    n, distinct = len(trace.keys), trace.distinct
    bound = hitratio.belady(trace.keys, capacity) / n
    # on IRM traces the best online policy can do, in expectation (hitratio docstring)
    oracle = hitratio.static_oracle(trace.keys, capacity) / n if trace.irm else None
    l1 = t.served["l1"] / n
    gets = n - t.served["miss"]
    jobs = {
        j: {
            "moved": t.moved[j],
            "seconds": round(t.job_seconds[j], 3),
            "per_s": t.moved[j] / t.job_seconds[j] if t.job_seconds[j] else None,
        }
        for j in JOBS
    }
    return {
        "trace": trace.name,
        "note": trace.note,
        "requests": n,
        "distinct_keys": distinct,
        "capacity": capacity,
        "capacity_pct": round(100 * capacity / distinct, 1),
        "served": {s: t.served[s] for s in SERVED},
        "share": {s: t.served[s] / n for s in SERVED},
        "l1_hit_ratio": l1,
        "belady": bound,
        "ratio_to_belady": l1 / bound if bound else None,
        "static_oracle": oracle,
        "oracle_to_belady": oracle / bound if oracle is not None and bound else None,
        "ratio_to_oracle": l1 / oracle if oracle else None,
        "simulated_hours": round((trace.times[-1] - trace.times[0]).total_seconds() / 3600, 1),
        "job_runs": t.runs,
        "jobs": jobs,
        "moves_in_events": events,  # by job, incl. "evict" (add) and "promote-on-read" (get)
        "wall_s": round(wall, 2),
        "gets_per_s": gets / t.get_seconds if t.get_seconds else None,
        "adds_per_s": t.served["miss"] / t.add_seconds if t.add_seconds else None,
        "requests_per_s": n / wall,
    }


# -- runner --------------------------------------------------------------------------


def traces(quick: bool) -> tuple[list[hitratio.Trace], list[str]]:
    """The replayed traces (see the module docstring for their sizes)."""
    n = QUICK_REQUESTS if quick else REQUESTS
    keys = 20_000 if quick else 10_000  # quick: enough distinct keys to overflow L1
    out = [hitratio.zipf_trace(a, keys, n) for a in (0.8, 1.0)]
    chat = hitratio.chitchat_trace(limit=n)
    if chat is None:
        return out, ["chitchat-dataset is not installed: Zipf traces only"]
    return [*out, chat], []


def measure(quick: bool, url: str = URL) -> dict[str, Any]:
    started = time.perf_counter()
    chosen, notes = traces(quick)
    return {
        "policy": "default",
        "namespace": "one (the capacity is per namespace)",
        "dim": DIM,
        "jobs_every_min": EVERY.total_seconds() / 60,
        "notes": notes,
        "results": [replay_trace(t, url) for t in chosen],
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(report: dict[str, Any]) -> list[str]:
    """A table: one row per trace."""
    lines = [
        "| trace | requests | capacity (share of keys) | miss | L1 | L2 | L3 | Belady "
        "| L1 / Belady | static oracle / Belady | L1 / static oracle "
        "| moved: demote, promote, on read, evict | moves/s | gets/s | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in report["results"]:
        sh, j = r["share"], r["jobs"]
        moved = sum(j[k]["moved"] for k in JOBS)
        secs = sum(j[k]["seconds"] for k in JOBS)
        rate = f"{moved / secs:,.0f}" if secs else "—"
        ratio, bound, to_bound = (
            "—" if r.get(k) is None else f"{r[k]:.2f}"
            for k in ("ratio_to_belady", "oracle_to_belady", "ratio_to_oracle")
        )
        evict = r["moves_in_events"].get("evict", 0)
        on_read = r["moves_in_events"].get("promote-on-read", 0)
        lines.append(
            f"| {r['trace']} | {r['requests']:,} | {r['capacity']:,} ({r['capacity_pct']:g}%) "
            f"| {sh['miss']:.3f} | {sh['l1']:.3f} | {sh['l2']:.3f} | {sh['l3']:.3f} "
            f"| {r['belady']:.3f} | {ratio} | {bound} | {to_bound} | {j['demote']['moved']:,}, "
            f"{j['promote']['moved']:,}, {on_read:,}, {evict:,} | {rate} "
            f"| {r['gets_per_s'] or 0:,.0f} | {r['wall_s']:.1f} |"
        )
    return lines


def run(quick: bool, url: str = URL) -> dict[str, Any]:
    """The replay for the tiers suite: measured, its table printed."""
    report = measure(quick, url)
    print("\n".join(markdown(report)))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4,000 requests a trace (CI smoke)")
    p.add_argument("--url", default=URL, help="the Redis to use (keys under its own prefix)")
    args = p.parse_args(argv)
    run(args.quick, args.url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
