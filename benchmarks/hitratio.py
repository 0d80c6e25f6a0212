"""Hit ratio of each eviction selector, next to Belady's optimum.

A cache of capacity C runs over a request trace. A hit updates the item's
stats; a miss inserts the key, and when the cache then holds more than C
items, the selector under test picks a batch of max(1, C // 100) victims
from a snapshot of every resident item's `ItemStats` (the way a tier calls
it), and they are deleted. Stats are kept the way the tiers keep them:

- first request of a key: inserted_at = last_accessed_at = created_at = t,
  access_count 0, no recent hits (a new memory; the request is the write);
- a later miss (the key was evicted): the memory comes back from the tier
  below with the access count it left with, plus this request (the engine
  counts an access in whichever tier serves it, and the count moves with the
  row: tests/test_lifecycle.py, test_access_count_travels_with_a_memory_across_tiers),
  its created_at, inserted_at = last_accessed_at = t and no recent hits (those
  of L1 stay in Redis and do not come back);
- hit: last_accessed_at = t, access_count + 1, t appended to recent_hits
  (the last `HITS_KEPT` kept, as L1 does);
- importance is 0.5 for all (the traces carry none), nothing expires and
  nothing is pinned, so `ttl` (which would evict nothing) is left out.

Belady's MIN is the bound: at the same C, one eviction per miss, the
resident key (the new one included, i.e. bypass allowed) whose next use is
farthest. The batch selectors evict up to 1% of C at once, so they run
slightly below C on average; MIN does not, which is part of the gap.

Belady knows the future; two references say what an online policy can
reach (they are not selectors: the goal's "best selector" never counts them):

- ``static-oracle``: the C keys most requested over the whole trace stay
  resident, nothing else is ever cached (every request of another key is a
  miss, and so is the first request of a kept key: a cold start like every
  row). Hits = sum over those C keys of (requests - 1). Under the
  independent reference model (requests i.i.d. from fixed popularities,
  the Zipf traces) no online policy beats in expectation the cache of the C
  truly most popular keys (Aho, Denning & Ullman 1971, policy A0), and the
  trace's most requested C do at least as well as those on the trace: so
  where static-oracle < 0.9 x Belady, no online policy is expected to
  reach 0.9 x Belady. The chat trace is not IRM (bursts), so there it is
  no bound: lru beats it by far.
- ``perfect-lfu``: online, with every key's request count kept forever,
  evicted keys included; a missed key is admitted (one eviction, like MIN)
  when its count, this request included, exceeds the smallest resident
  count (ties: smallest key). The ``lfu`` selector sees the same counts
  (they come back with an evicted key) but always admits the missed key
  and evicts in batches, so it runs close to, not at, this reference.

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

    python -m benchmarks run tiers           # full: 4-6 min on 2 shared cores
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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from tiermem.lifecycle.selectors import SELECTORS
from tiermem.lifecycle.stats import ItemStats
from tiermem.tiers.hot_codec import HITS_KEPT

RESULTS = Path(__file__).resolve().parent / "results"
SELECTED = ("lru", "lfu", "fifo", "score", "sieve", "s3fifo", "hyperbolic")
REFERENCES = ("static-oracle", "perfect-lfu")
CAPACITIES = (0.01, 0.05, 0.10, 0.20)
QUICK_CAPACITIES = (0.01, 0.10)  # a smoke run: a selection pass costs ~min(C, 100) per miss
GOAL = 0.9  # the tiers goal: hit ratio >= 0.9 x Belady
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Trace:
    name: str
    keys: list[str]  # request i asks for keys[i]
    times: list[datetime]  # strictly increasing
    note: str
    irm: bool  # i.i.d. requests from fixed popularities: static-oracle bounds online policies

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
    return Trace(f"zipf-{alpha}", keys, times, note, irm=True)


def chitchat_trace(limit: int | None = None) -> Trace | None:
    try:
        import chitchat_dataset
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
    return Trace("chitchat", keys, times, note, irm=False)


# -- simulation ----------------------------------------------------------------------


_set = object.__setattr__  # ItemStats is frozen


def simulate(trace: Trace, select: Callable[..., list[str]], capacity: int) -> int:
    """Hits of a cache of `capacity` items evicting in batches chosen by `select`."""
    batch = max(1, capacity // 100)
    stats: dict[str, ItemStats] = {}
    below: dict[str, ItemStats] = {}  # evicted keys' last stats (the tier below holds them)
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
        old = below.pop(key, None)
        if old is None:
            stats[key] = ItemStats(key, "bench", "episodic", t, t, t, 0)
        else:
            stats[key] = ItemStats(
                key, "bench", "episodic", old.created_at, t, t, old.access_count + 1
            )
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
                below[v] = stats.pop(v)
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


def static_oracle(keys: Sequence[str], capacity: int) -> int:
    """Hits of a cache holding only the `capacity` most requested keys (cold start)."""
    counts = sorted(Counter(keys).values(), reverse=True)
    return sum(c - 1 for c in counts[:capacity])


def perfect_lfu(keys: Sequence[str], capacity: int) -> int:
    """Hits of LFU with every key's count kept forever (admission by count, one eviction)."""
    count: dict[str, int] = {}
    resident: set[str] = set()
    heap: list[tuple[int, str]] = []  # (count, key), stale entries skipped
    hits = 0
    for key in keys:
        c = count[key] = count.get(key, 0) + 1
        if key in resident:
            hits += 1
        elif len(resident) < capacity:
            resident.add(key)
        else:
            while heap[0][1] not in resident or count[heap[0][1]] != heap[0][0]:
                heapq.heappop(heap)
            weakest, victim = heap[0]
            if c <= weakest:
                continue  # not admitted: no entry for a non-resident
            heapq.heappop(heap)
            resident.remove(victim)
            resident.add(key)
        heapq.heappush(heap, (c, key))
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
    elif selector == "static-oracle":
        hits = static_oracle(trace.keys, capacity)
    elif selector == "perfect-lfu":
        hits = perfect_lfu(trace.keys, capacity)
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
    names = (*SELECTED, "belady", *REFERENCES)
    jobs = [(t.name, s, c) for t in traces for c in caps for s in names]
    jobs.sort(key=lambda j: -j[2])  # big capacities (slowest) first: better packing
    with get_context("fork").Pool(workers) as pool:
        rows = pool.map(_job, jobs, chunksize=1)
    by_cell = {(r["trace"], r["capacity_pct"], r["selector"]): r["hit_ratio"] for r in rows}
    for r in rows:
        bound = by_cell[(r["trace"], r["capacity_pct"], "belady")]
        oracle = by_cell[(r["trace"], r["capacity_pct"], "static-oracle")]
        r["ratio_to_belady"] = r["hit_ratio"] / bound if bound else None
        r["ratio_to_oracle"] = r["hit_ratio"] / oracle if oracle else None
    rows.sort(key=lambda r: (r["trace"], r["selector"], r["capacity_pct"]))
    results = [r for r in rows if r["selector"] not in REFERENCES]
    references = [r for r in rows if r["selector"] in REFERENCES]
    irm = {t.name: t.irm for t in traces}
    cells = feasibility(results, references, irm)
    return {
        "benchmark": "hitratio",
        "quick": quick,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {workers} workers",
        "traces": [{"name": t.name, "distinct_keys": t.distinct, "note": t.note} for t in traces],
        "selectors": [*SELECTED, "belady"],
        "references": list(REFERENCES),
        "capacities_pct": [c * 100 for c in caps],
        "batch": "max(1, capacity // 100) victims per eviction pass; belady, perfect-lfu: 1",
        "notes": notes,
        "results": results,
        "reference_results": references,
        "cells": cells,
        "oracle_summary": oracle_summary(cells),
        "seconds": round(time.perf_counter() - start, 1),
    }


def feasibility(
    results: list[dict[str, Any]], references: list[dict[str, Any]], irm: dict[str, bool]
) -> list[dict[str, Any]]:
    """Per trace x capacity: Belady, the static oracle, and the best selector against both.

    `reachable` is True/False where the oracle bounds online policies (IRM traces):
    oracle >= GOAL x Belady; None where no such bound is known (the chat trace).
    The best selector is picked as the goal picks it: highest hit ratio, belady excluded.
    """
    out = []
    for trace, cap in sorted({(r["trace"], r["capacity_pct"]) for r in results}):
        here = [r for r in results if (r["trace"], r["capacity_pct"]) == (trace, cap)]
        oracle = next(
            r
            for r in references
            if (r["trace"], r["capacity_pct"], r["selector"]) == (trace, cap, "static-oracle")
        )
        top = max((r for r in here if r["selector"] != "belady"), key=lambda r: r["hit_ratio"])
        bound = irm[trace]
        out.append(
            {
                "trace": trace,
                "capacity_pct": cap,
                "belady": next(r["hit_ratio"] for r in here if r["selector"] == "belady"),
                "static_oracle": oracle["hit_ratio"],
                "oracle_to_belady": oracle["ratio_to_belady"],
                "oracle_bounds_online": bound,
                "reachable": (oracle["ratio_to_belady"] >= GOAL) if bound else None,
                "best_selector": top["selector"],
                "best_ratio_to_belady": top["ratio_to_belady"],
                "best_ratio_to_oracle": top["ratio_to_oracle"],
                "meets_goal": top["ratio_to_belady"] >= GOAL,
            }
        )
    return out


def oracle_summary(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """How many cells any online policy can meet, and how many the best selector meets."""
    bounded = [c for c in cells if c["oracle_bounds_online"]]
    reachable = [c for c in bounded if c["reachable"]]
    unbounded = [c for c in cells if not c["oracle_bounds_online"]]
    return {
        "cells": len(cells),
        "oracle_bound_cells": len(bounded),
        "unreachable": [
            f"{c['trace']} {c['capacity_pct']:g}%" for c in bounded if not c["reachable"]
        ],
        "reachable_cells": len(reachable),
        "met_where_reachable": sum(c["meets_goal"] for c in reachable),
        "no_bound_cells": len(unbounded),
        "met_where_no_bound": sum(c["meets_goal"] for c in unbounded),
        "met_all": sum(c["meets_goal"] for c in cells),
    }


READING = """\
How to read it: sieve and s3fifo count only the hits since the previous eviction
pass over the group (`ItemStats.passed_at`, as the engine records it per tier,
namespace and kind). This batch adaptation clears every visited bit at each pass,
where real SIEVE clears only the bits its hand sweeps over: with a pass every
C/100 misses, sieve degenerates to fifo on Zipf, while on bursty chat it matches
lru. lfu counts lifetime accesses and never ages, so at 1% on chitchat a new key
is the victim on nearly every miss and its hit ratio collapses; on Zipf the same rule
filters one-hit wonders and beats lru. hyperbolic ranks by reads per second of
life (an unread memory is worth 0.01 reads) after evicting memories whose burst
of reads is visibly over: lfu-like on Zipf without lfu's freeze, lru-like on the
chat trace. On a chat cache tighter than its live conversations (the --quick run's
2,000-utterance prefix at C=19) lru keeps more: a new, unread memory is worth little
to hyperbolic until its first read.
A key that comes back keeps its access count (the engine moves the count with
the memory), so lfu on Zipf runs at perfect-lfu's level: within 1-3% of the
static oracle. lfu's frozen counts are also why it collapses on the chat trace,
where yesterday's busy conversation outranks today's."""


def _cell(r: dict[str, Any]) -> str:
    if r["selector"] == "belady":
        return f"{r['hit_ratio']:.3f}"
    oracle = "—" if r["selector"] == "static-oracle" else f"{r['ratio_to_oracle']:.2f}"
    return f"{r['hit_ratio']:.3f} ({r['ratio_to_belady']:.2f} / {oracle})"


def markdown(report: dict[str, Any]) -> str:
    caps = report["capacities_pct"]
    refs = report.get("references", [])
    out = [
        "# Eviction selectors: hit ratio vs Belady (and vs the static oracle)",
        "",
        "Generated by `python -m benchmarks run tiers"
        + (" --quick" if report["quick"] else "")
        + f"` ({report['when']}, {report['machine']}, {report['seconds']} s). "
        "Each cell: hit ratio (ratio to Belady's MIN / ratio to the static oracle, "
        "at the same capacity). The goal is stated against Belady: >= "
        f"{GOAL:g} x Belady. Below the line, references that are not selectors "
        "(see the module docstring of benchmarks/hitratio.py): static-oracle keeps "
        "the C most requested keys of the whole trace (on the Zipf traces no online "
        "policy beats it in expectation), perfect-lfu is LFU with every key's "
        "count kept forever. Capacity is a share of the trace's distinct keys; "
        f"selectors evict {report['batch']}.",
        "",
        *[f"- {n}" for n in report["notes"]],
        "",
        READING,
    ]
    for t in report["traces"]:
        out += ["", f"## {t['name']}: {t['note']}", ""]
        head = [f"{c:g}% ({_cap(report, t['name'], c)})" for c in caps]
        out += ["| selector | " + " | ".join(head) + " |", "|---" * (len(caps) + 1) + "|"]
        for s in [*report["selectors"], *refs]:
            cells = [_cell(_row(report, t["name"], s, c)) for c in caps]
            out.append(f"| {s} | " + " | ".join(cells) + " |")
    if report.get("cells"):
        out += ["", *feasibility_markdown(report)]
    return "\n".join(out) + "\n"


def feasibility_markdown(report: dict[str, Any]) -> list[str]:
    """The goal per cell, next to what the static oracle says is reachable."""
    s = report["oracle_summary"]
    out = [
        "## The goal per cell, and what an online policy can reach",
        "",
        f"Goal: the best selector's hit ratio >= {GOAL:g} x Belady in every cell. Where "
        "the requests are IRM (Zipf) and static-oracle < "
        f"{GOAL:g} x Belady, no online policy reaches the goal in expectation: "
        f"{len(s['unreachable'])} of {s['oracle_bound_cells']} Zipf cells "
        f"({', '.join(s['unreachable']) or 'none'}). The best selector meets the goal "
        f"in {s['met_all']} of {s['cells']} cells: {s['met_where_reachable']} of the "
        f"{s['reachable_cells']} reachable Zipf cells, {s['met_where_no_bound']} of "
        f"the {s['no_bound_cells']} chat cells (not IRM: no bound but Belady's).",
        "",
        "| trace | capacity | Belady | static oracle | oracle / Belady | reachable "
        "| best selector | / Belady | / oracle | goal |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---|",
    ]
    for c in report["cells"]:
        reach = {True: "yes", False: "**no**", None: "no bound"}[c["reachable"]]
        out.append(
            f"| {c['trace']} | {c['capacity_pct']:g}% | {c['belady']:.3f} "
            f"| {c['static_oracle']:.3f} | {c['oracle_to_belady']:.2f} | {reach} "
            f"| {c['best_selector']} | {c['best_ratio_to_belady']:.3f} "
            f"| {c['best_ratio_to_oracle']:.3f} | {'met' if c['meets_goal'] else 'not met'} |"
        )
    return out


def _row(report: dict[str, Any], trace: str, selector: str, cap: float) -> dict[str, Any]:
    return next(
        r
        for r in (*report["results"], *report.get("reference_results", []))
        if (r["trace"], r["selector"]) == (trace, selector) and abs(r["capacity_pct"] - cap) < 1e-9
    )


def _cap(report: dict[str, Any], trace: str, cap: float) -> str:
    return f"C={_row(report, trace, 'belady', cap)['capacity']:,}"


REFERENCE_STYLE: dict[str, dict[str, Any]] = {
    "belady": {"color": "black", "linestyle": "--"},
    "static-oracle": {"color": "grey", "linestyle": ":"},
    "perfect-lfu": {"color": "grey", "linestyle": "-."},
}


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = report["traces"]
    fig, axes = plt.subplots(1, len(traces), figsize=(5 * len(traces), 4), squeeze=False)
    for ax, t in zip(axes[0], traces, strict=True):
        for s in [*report["selectors"], *report.get("references", [])]:
            caps = report["capacities_pct"]
            ys = [_row(report, t["name"], s, c)["hit_ratio"] for c in caps]
            style = REFERENCE_STYLE.get(s, {"marker": "o"})
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
