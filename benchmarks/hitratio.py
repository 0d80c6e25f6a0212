"""Hit ratio of each eviction selector, next to Belady's optimum.

A cache of capacity C runs over a request trace. A hit updates the item's
stats; a miss inserts the key, and when the cache then holds more than C
items, the selector under test picks a batch of max(1, C // 100) victims
from a snapshot of every resident item's `ItemStats` (the way a tier calls
it), and they are deleted. Stats are kept the way the tiers keep them:

- insert: inserted_at = last_accessed_at = created_at = t, access_count 0,
  no recent hits (a new memory; the missed request is the write);
- hit: last_accessed_at = t, access_count + 1, t appended to recent_hits
  (the last 8 kept, as L1 does);
- importance is 0.5 for all (the traces carry none), nothing expires and
  nothing is pinned, so `ttl` (which would evict nothing) is left out.

Belady's MIN is the bound: at the same C, one eviction per miss, the
resident key (the new one included, i.e. bypass allowed) whose next use is
farthest. The batch selectors evict up to 1% of C at once, so they run
slightly below C on average; MIN does not, which is part of the gap.

Traces (times are injected: the selectors see trace time, never the clock):

- ``zipf-0.8``, ``zipf-1.0``: 200k requests over 10k keys, P(rank r) ∝
  1/r^alpha, ranks shuffled over the key ids (numpy seed 0), one request
  per second;
- ``chitchat``: the chitchat-dataset package's `dataset.json` (7,168
  conversations, 258k utterances). Each utterance is one access to the
  memory of (conversation id, sender), in timestamp order (ties: dataset
  order); a timestamp equal to or before the previous one is moved 1 ms
  after it, so times strictly increase. Conversations are bursts: a key is
  hot while its conversation lasts, then rarely comes back. Skipped, with
  a note, if the package is not installed.

Capacities: 1%, 5%, 10% and 20% of each trace's distinct keys.

    python -m benchmarks run tiers           # full: ~6 min on 2 shared cores
    python -m benchmarks run tiers --quick   # 1k keys, 2k requests, 2 capacities
    python -m benchmarks.hitratio [--quick]  # the same, standalone
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from tiermem.lifecycle.selectors import SELECTORS
from tiermem.lifecycle.stats import ItemStats

RESULTS = Path(__file__).resolve().parent / "results"
SELECTED = ("lru", "lfu", "fifo", "score", "sieve", "s3fifo")
CAPACITIES = (0.01, 0.05, 0.10, 0.20)
QUICK_CAPACITIES = (0.01, 0.10)  # a smoke run: a selection pass costs ~min(C, 100) per miss
HITS_KEPT = 8
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Trace:
    name: str
    keys: list[str]  # request i asks for keys[i]
    times: list[datetime]  # strictly increasing
    note: str

    @property
    def distinct(self) -> int:
        return len(set(self.keys))


# -- traces --------------------------------------------------------------------------


def zipf_trace(alpha: float, n_keys: int, n_requests: int, seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_keys + 1) ** alpha
    ranks = rng.choice(n_keys, size=n_requests, p=p / p.sum())
    key_of_rank = rng.permutation(n_keys)  # popularity unrelated to id order
    keys = [f"z{k}" for k in key_of_rank[ranks].tolist()]
    times = [T0 + timedelta(seconds=i) for i in range(n_requests)]
    note = f"Zipf alpha {alpha}, {n_keys:,} keys, {n_requests:,} requests, seed {seed}"
    return Trace(f"zipf-{alpha}", keys, times, note)


def chitchat_trace(limit: int | None = None) -> Trace | None:
    try:
        import chitchat_dataset  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(chitchat_dataset.__file__).parent / "dataset.json"
    with path.open() as f:
        data = json.load(f)
    events = [
        (u["timestamp"], order, f"{cid}/{u['sender']}")
        for order, (cid, conv) in enumerate(data.items())
        for turn in conv["messages"]
        for u in turn
    ]
    events.sort(key=lambda e: (e[0], e[1]))  # stable: dataset order within a conversation
    events = events[:limit] if limit else events
    keys, times = [], []
    last = datetime.min.replace(tzinfo=UTC)
    for ts, _, key in events:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        last = t if t > last else last + timedelta(milliseconds=1)
        keys.append(key)
        times.append(last)
    note = f"chitchat-dataset, {len(keys):,} utterances as accesses to (conversation, sender)"
    return Trace("chitchat", keys, times, note)


# -- simulation ----------------------------------------------------------------------


_set = object.__setattr__  # ItemStats is frozen


def simulate(trace: Trace, select: Callable[..., list[str]], capacity: int) -> int:
    """Hits of a cache of `capacity` items evicting in batches chosen by `select`."""
    batch = max(1, capacity // 100)
    stats: dict[str, ItemStats] = {}
    hits = 0
    last_pass: datetime | None = None  # as the engine records it per group
    for key, t in zip(trace.keys, trace.times, strict=True):
        s = stats.get(key)
        if s is not None:
            hits += 1
            stats[key] = ItemStats(
                key, "bench", "episodic", s.created_at, s.inserted_at, t,
                s.access_count + 1, (*s.recent_hits, t)[-HITS_KEPT:],
            )  # fmt: skip
            continue
        stats[key] = ItemStats(key, "bench", "episodic", t, t, t, 0)
        if len(stats) > capacity:
            items = list(stats.values())
            if last_pass is not None:
                for s in items:  # = replace(s, passed_at=last_pass), 30x cheaper: the
                    _set(s, "passed_at", last_pass)  # simulator owns these snapshots
            victims = select(items, t, batch)
            last_pass = t
            if not victims:
                raise RuntimeError("selector chose no victim in an over-full cache")
            for v in victims:
                del stats[v]
    return hits


def belady(keys: Sequence[str], capacity: int) -> int:
    """Hits of Belady's MIN: evict the resident key used farthest in the future."""
    never = len(keys)
    next_use = [never] * len(keys)
    seen: dict[str, int] = {}
    for i in range(len(keys) - 1, -1, -1):
        next_use[i] = seen.get(keys[i], never)
        seen[keys[i]] = i
    resident: dict[str, int] = {}  # key -> its next use
    heap: list[tuple[int, str]] = []  # (-next use, key), stale entries skipped
    hits = 0
    for i, key in enumerate(keys):
        if key in resident:
            hits += 1
        resident[key] = next_use[i]
        heapq.heappush(heap, (-next_use[i], key))
        while len(resident) > capacity:
            nxt, victim = heapq.heappop(heap)
            if resident.get(victim) == -nxt:
                del resident[victim]
    return hits


# -- runner --------------------------------------------------------------------------

_TRACES: dict[str, Trace] = {}  # filled before the pool forks


def _job(job: tuple[str, str, float]) -> dict[str, Any]:
    name, selector, frac = job
    trace = _TRACES[name]
    capacity = max(1, round(trace.distinct * frac))
    start = time.perf_counter()
    if selector == "belady":
        hits = belady(trace.keys, capacity)
    else:
        hits = simulate(trace, SELECTORS[selector], capacity)
    return {
        "trace": name,
        "selector": selector,
        "capacity_pct": round(frac * 100, 3),
        "capacity": capacity,
        "requests": len(trace.keys),
        "hits": hits,
        "hit_ratio": hits / len(trace.keys),
        "seconds": round(time.perf_counter() - start, 2),
    }


def load_traces(quick: bool) -> tuple[list[Trace], list[str]]:
    notes: list[str] = []
    if quick:
        traces = [zipf_trace(a, 1_000, 2_000) for a in (0.8, 1.0)]
        chat = chitchat_trace(limit=2_000)
    else:
        traces = [zipf_trace(a, 10_000, 200_000) for a in (0.8, 1.0)]
        chat = chitchat_trace()
    if chat is None:
        notes.append("chitchat-dataset is not installed: Zipf traces only")
    else:
        traces.append(chat)
    return traces, notes


def measure(quick: bool, workers: int) -> dict[str, Any]:
    start = time.perf_counter()
    traces, notes = load_traces(quick)
    _TRACES.update({t.name: t for t in traces})
    caps = QUICK_CAPACITIES if quick else CAPACITIES
    jobs = [(t.name, s, c) for t in traces for c in caps for s in (*SELECTED, "belady")]
    jobs.sort(key=lambda j: -j[2])  # big capacities (slowest) first: better packing
    with get_context("fork").Pool(workers) as pool:
        rows = pool.map(_job, jobs, chunksize=1)
    best = {
        (r["trace"], r["capacity_pct"]): r["hit_ratio"] for r in rows if r["selector"] == "belady"
    }
    for r in rows:
        bound = best[(r["trace"], r["capacity_pct"])]
        r["ratio_to_belady"] = r["hit_ratio"] / bound if bound else None
    rows.sort(key=lambda r: (r["trace"], r["selector"], r["capacity_pct"]))
    return {
        "benchmark": "hitratio",
        "quick": quick,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {workers} workers",
        "traces": [{"name": t.name, "distinct_keys": t.distinct, "note": t.note} for t in traces],
        "selectors": [*SELECTED, "belady"],
        "capacities_pct": [c * 100 for c in caps],
        "batch": "max(1, capacity // 100) victims per eviction pass; belady: 1",
        "notes": notes,
        "results": rows,
        "seconds": round(time.perf_counter() - start, 1),
    }


READING = """\
How to read it: sieve and s3fifo count only the hits since the previous eviction
pass over the group (`ItemStats.passed_at`, as the engine records it per tier,
namespace and kind). This batch adaptation clears every visited bit at each pass,
where real SIEVE clears only the bits its hand sweeps over: with a pass every
C/100 misses, sieve degenerates to fifo on Zipf, while on bursty chat it matches
lru. lfu counts lifetime accesses and never ages, so at 1% on chitchat a new key
is the victim on every miss and its hit ratio collapses; on Zipf the same rule
filters one-hit wonders and beats lru."""


def markdown(report: dict[str, Any]) -> str:
    caps = report["capacities_pct"]
    out = [
        "# Eviction selectors: hit ratio vs Belady",
        "",
        "Generated by `python -m benchmarks run tiers"
        + (" --quick" if report["quick"] else "")
        + f"` ({report['when']}, {report['machine']}, {report['seconds']} s). "
        "Each cell: hit ratio (ratio to Belady's MIN at the same capacity). "
        "Capacity is a share of the trace's distinct keys; selectors evict "
        f"{report['batch']}.",
        "",
        *[f"- {n}" for n in report["notes"]],
        "",
        READING,
    ]
    for t in report["traces"]:
        out += ["", f"## {t['name']}: {t['note']}", ""]
        head = [f"{c:g}% ({_cap(report, t['name'], c)})" for c in caps]
        out += ["| selector | " + " | ".join(head) + " |", "|---" * (len(caps) + 1) + "|"]
        for s in report["selectors"]:
            cells = []
            for c in caps:
                r = _row(report, t["name"], s, c)
                ratio = r["ratio_to_belady"]
                cells.append(f"{r['hit_ratio']:.3f}" + ("" if s == "belady" else f" ({ratio:.2f})"))
            out.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _row(report: dict[str, Any], trace: str, selector: str, cap: float) -> dict[str, Any]:
    return next(
        r
        for r in report["results"]
        if (r["trace"], r["selector"]) == (trace, selector) and abs(r["capacity_pct"] - cap) < 1e-9
    )


def _cap(report: dict[str, Any], trace: str, cap: float) -> str:
    return f"C={_row(report, trace, 'belady', cap)['capacity']:,}"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = report["traces"]
    fig, axes = plt.subplots(1, len(traces), figsize=(5 * len(traces), 4), squeeze=False)
    for ax, t in zip(axes[0], traces, strict=True):
        for s in report["selectors"]:
            caps = report["capacities_pct"]
            ys = [_row(report, t["name"], s, c)["hit_ratio"] for c in caps]
            style = {"color": "black", "linestyle": "--"} if s == "belady" else {"marker": "o"}
            ax.plot(caps, ys, label=s, **style)
        ax.set_xscale("log")
        ax.set_xticks(caps, [f"{c:g}%" for c in caps])
        ax.set_title(t["name"])
        ax.set_xlabel("capacity (share of distinct keys)")
        ax.set_ylabel("hit ratio")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(quick: bool, out: Path | None) -> dict[str, Any]:
    """The suite: hit ratios, and (full runs, into `out`) hitratio.md and hitratio.png."""
    report = measure(quick, min(2, os.cpu_count() or 1))
    table = markdown(report)
    print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "hitratio.md").write_text(table)
        try:
            plot(report, out / "hitratio.png")
        except ImportError:
            print("tiers: matplotlib is not installed, no plot")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny traces, no plot (CI smoke)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    args = p.parse_args(argv)
    report = measure(args.quick, args.workers)
    table = markdown(report)
    print(table)
    if args.quick:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hitratio.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "hitratio.md").write_text(table)
    plot(report, args.out / "hitratio.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
