"""Renders RESULTS.md and PNG plots from the suites' JSONs.

`render(dir)` reads `dir/*.json` (the suites' outputs) and writes RESULTS.md
(`benchmarks/RESULTS.md` for the repo's results directory, else `dir/RESULTS.md`)
and the plots into `dir` (skipped, with a note, without matplotlib). Every
figure is shown next to the limit measured in the same run, with the ratio
and the issue's goal marked met / not met. `readme()` copies the headline
table into README.md between its `bench:start` / `bench:end` markers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ORDER = ("ingest", "search", "dedupe", "peers", "tiers", "lifecycle", "cold", "memory", "quality")
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
COMMAND = "python -m benchmarks run && python -m benchmarks report --readme"


def load(d: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for name in ORDER:
        path = d / f"{name}.json"
        if path.exists():
            data = json.loads(path.read_text())
            if "suite" in data:  # written by the runner (older one-off JSONs are ignored)
                out[name] = data
            elif name == "cold" and "queries" in data:  # a standalone benchmarks.cold run
                out[name] = legacy_cold(data)
        elif name == "tiers" and (d / "hitratio.json").exists():
            out[name] = legacy_tiers(d / "hitratio.json")
    if "tiers" in out:
        tiers_oracle(out["tiers"])
    return out


def tiers_oracle(r: dict[str, Any]) -> None:
    """Beside the tiers goal (stated vs Belady, unchanged): what the static oracle allows.

    Where requests are IRM (the Zipf traces) no online policy beats the static
    oracle in expectation, so a cell where it is below 0.9 x Belady cannot be met.
    """
    s = r.get("oracle_summary")
    if not s:
        return
    for g in r.get("goals", []):
        if g["goal"].startswith("tiers:"):
            g["detail"] = (
                (g.get("detail") or "")
                + f"; vs the static oracle (the bound for online policies on IRM/Zipf): "
                f"unreachable in {len(s['unreachable'])} of {s['oracle_bound_cells']} Zipf "
                f"cells, met in {s['met_where_reachable']} of the {s['reachable_cells']} "
                f"reachable ones and {s['met_where_no_bound']} of {s['no_bound_cells']} chat cells"
            )


def legacy_cold(data: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.suites import cold_goals

    return cold_goals(data) | {
        "suite": "cold",
        "status": "ok",
        "reason": "a standalone `python -m benchmarks.cold` run, not yet re-run by the harness",
        "date": data.get("at", data.get("date", "?")),
        "git": data.get("git", {}),
        "quick": data.get("quick", False),
        "wall_s": data.get("wall_s", data.get("seconds", 0)),
    }


def legacy_tiers(path: Path) -> dict[str, Any]:
    """A hitratio.json of the standalone script (no tiers.json yet), labelled as such."""
    from benchmarks.suites import tiers_summary

    data = tiers_summary(json.loads(path.read_text()))
    return data | {
        "suite": "tiers",
        "status": "ok",
        "reason": "from results/hitratio.json, a standalone `python -m benchmarks.hitratio` "
        "run (its commit was not recorded), not yet re-run by the harness",
        "date": data.get("when", "?"),
        "git": {},
        "wall_s": data.get("seconds", 0),
    }


def num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    if abs(x) >= 1_000:
        s = f"{x:,.0f}"
    elif abs(x) >= 100:
        s = f"{x:.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.3g}"
    return s + unit


def mark(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "—"}[met]


def goals(res: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, g) for name, r in res.items() for g in r.get("goals", [])]


def goal_table(res: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| suite | goal | tiermem | limit | figure | target | |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for name, g in goals(res):
        value = g["value"]
        fig = num(value) + ("x" if "x" in g["target"] and value is not None else "")
        if g["target"].endswith("ms"):
            fig = num(value, " ms")
        elif "cell" in g["target"] and value is not None:
            fig = f"{value:.0%} of cells"
        detail = f" ({g['detail']})" if g.get("detail") else ""
        lines.append(
            f"| {name} | {g['goal']}{detail} | {num(g.get('tiermem'))} | {num(g.get('limit'))} "
            f"| {fig} | {g['target']} | {mark(g['met'])} |"
        )
    return lines


def run_table(res: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| suite | status | date (UTC) | commit | quick | wall s |",
        "|---|---|---|---|---|---:|",
    ]
    for name, r in res.items():
        git = r.get("git", {})
        commit = git.get("commit", "?")[:10] + (" (dirty)" if git.get("dirty") else "")
        status = r["status"] + (f": {r['reason']}" if r.get("reason") else "")
        if not git:
            commit = "?"
        lines.append(
            f"| {name} | {status} | {r['date']} | {commit} | {r['quick']} | {r['wall_s']:.0f} |"
        )
    return lines


# -- sections ------------------------------------------------------------------------


def sec_ingest(r: dict[str, Any]) -> list[str]:
    p, i, m = r["params"], r["ingest"], r["move"]
    tb, lb = i.get("tiermem_batch_ms_p10_p50_p90"), i.get("limit_batch_ms_p10_p50_p90")
    spread = ""
    if tb and lb:
        spread = (
            f" Batch time p10/p50/p90: tiermem {tb[0]:.0f}/{tb[1]:.0f}/{tb[2]:.0f} ms, "
            f"limit {lb[0]:.1f}/{lb[1]:.1f}/{lb[2]:.1f} ms."
        )
    return [
        f"N={p['n']:,} × {p['dim']}-d, {p['namespaces']} Zipf-sized namespaces, batches of "
        "1,000 with precomputed vectors; raw and tiermem batches alternate (benchmarks/core.py)."
        + spread,
        "",
        "| measure | tiermem | limit | limit value | tiermem / limit |",
        "|---|---:|---|---:|---:|",
        f"| ingest L1, memories/s | {num(i['tiermem_per_s'])} | redis-py pipeline, one HSET "
        f"per memory | {num(i['limit_per_s'])} | {i['tiermem_per_s'] / i['limit_per_s']:.2f} |",
        f"| move L1→L2, memories/s | {num(m['per_s'])} | tiermem ingest (same run) | "
        f"{num(i['tiermem_per_s'])} | {m['per_s'] / i['tiermem_per_s']:.2f} |",
    ]


def sec_search(r: dict[str, Any]) -> list[str]:
    p, s = r["params"], r["search"]
    t = s["tiermem"]
    lines = [
        f"{p['queries']} queries, one at a time, k={p['k']}, each within its namespace; "
        "L1+L2 (`search.deep_below=-1`). Limits on the same partitioned vectors: numpy exact "
        "per namespace and one usearch index per namespace.",
        "",
        "| measure | tiermem | numpy exact | ratio | usearch | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for q in ("p50_ms", "p99_ms"):
        lines.append(
            f"| search {q[:3]}, ms | {num(t[q])} | {num(s['numpy'][q])} | "
            f"{t[q] / s['numpy'][q]:.2f} | {num(s['usearch'][q])} | {t[q] / s['usearch'][q]:.2f} |"
        )
    lines.append(
        f"| recall@10 vs exact | {s['recall_at_10']:.4f} | 1 | | "
        f"{s['usearch_recall_at_10']:.4f} | |"
    )
    f = s.get("tiermem_first_query_ms", {})
    if f:
        lines += ["", f"First search per namespace (warm-up, not in the percentiles): p50 "
                  f"{num(f['p50'])} ms, max {num(f['max'])} ms."]  # fmt: skip
    return lines


def sec_peers(r: dict[str, Any]) -> list[str]:
    tm, lim = r["tiermem"], r["limits_same_queries"]
    lines = [
        f"The core suite's data (N={r['n']:,}, {r['namespaces']} namespaces), its first "
        f"{r['queries']} queries, k={r['k']}, each filtered to its namespace; tiermem's "
        "figures from the same process (see benchmarks/peers.py for each peer's API).",
        "",
        "| system | version | ingest mem/s | tiermem / peer | p50 ms | p99 ms | recall@10 "
        "| peer p50 / tiermem p50 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        f"| **tiermem** (add_many → L1; search L1+L2) | {r['versions'].get('tiermem', '')} | "
        f"{num(tm['ingest_per_s'])} | 1 | {num(tm['p50_ms'])} | {num(tm['p99_ms'])} | "
        f"{tm['recall_at_10']:.3f} | 1 |",
    ]
    for name, p in r["peers"].items():
        if p["status"] != "ok":
            lines.append(f"| {name} | {p.get('version') or '—'} | — ({p['status']}: "
                         f"{p.get('reason')}) | — | — | — | — | — |")  # fmt: skip
            continue
        i, s, x = p["ingest"], p["search"], p["ratios"]
        lines.append(
            f"| {name} | {p['version']} | {num(i['per_s'])} | "
            f"{x['ingest_tiermem_over_peer']:.1f} | {num(s['p50_ms'])} | {num(s['p99_ms'])} | "
            f"{s['recall_at_10']:.3f} | {x['search_p50_peer_over_tiermem']:.1f} |"
        )
    for m, v in lim.items():
        lines.append(
            f"| *limit:* {m} per namespace | | — | — | {num(v['p50_ms'])} | {num(v['p99_ms'])} "
            f"| | {v['p50_ms'] / tm['p50_ms']:.2f} |"
        )
    caps = next(iter(r["capabilities_missing"].values()))
    lines += ["", "| capability | tiermem | " + " | ".join(r["peers"]) + " | why not |",
              "|---|---|" + "---|" * len(r["peers"]) + "---|"]  # fmt: skip
    for cap, why in caps.items():
        lines.append(f"| {cap} | yes | " + " | ".join("—" for _ in r["peers"]) + f" | {why} |")
    return lines


def sec_dedupe(r: dict[str, Any]) -> list[str]:
    rows = (
        ("add_many, batched dedupe", "batched"),
        ("add, one at a time", "one_by_one"),
        ("limit: add_many as episodic (no dedupe)", "limit_episodic"),
    )
    return [
        f"N={r['n']:,} semantic facts × {r['dim']}-d over {r['namespaces']} namespaces, "
        "10% exact and 20% near duplicates of earlier ones (benchmarks/dedupe.py). "
        f"Same memories kept by both dedupe paths: {r['same_outcome']}.",
        "",
        "| path | facts/s | memories kept |",
        "|---|---:|---:|",
        *(f"| {label} | {num(r[k]['per_s'])} | {r[k]['memories']:,} |" for label, k in rows),
        "",
        f"Batched / one at a time: {r['speedup_vs_one_by_one']:.1f}x; "
        f"batched / no-dedupe limit: {r['ratio_to_limit']:.2f}x.",
    ]


def sec_tiers(r: dict[str, Any]) -> list[str]:
    lines = [
        "Hit ratio of each eviction selector vs Belady's MIN at the same capacity "
        "(benchmarks/hitratio.py; full tables in [results/hitratio.md](results/hitratio.md)). "
        "The goal is stated vs Belady; the static oracle (the C most requested keys of the "
        "trace) bounds every online policy on the Zipf traces (IRM), not on chat.",
        "",
        "| trace | capacity | Belady | static oracle | best selector | its ratio "
        "| its ratio to the oracle | the default's ratio |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    oracle = {(c["trace"], c["capacity_pct"]): c for c in r.get("cells", [])}
    for b in r.get("best_per_cell", []):
        c = oracle.get((b["trace"], b["capacity_pct"]))
        orc = "—" if c is None else f"{c['static_oracle']:.3f}"
        to_orc = "—" if c is None else f"{c['best_ratio_to_oracle']:.2f}"
        lines.append(
            f"| {b['trace']} | {b['capacity_pct']:g}% | {b['belady']:.3f} | {orc} "
            f"| {b['best_selector']} | {b['best_ratio']:.2f} | {to_orc} "
            f"| {_default_ratio(b)} |"
        )
    return lines + sec_replay(r.get("replay"))


def _default_ratio(b: dict[str, Any]) -> str:
    """The default policy's selector and its ratio (results before 9efa09a: lru's)."""
    if "default_ratio" in b:
        return f"{b['default_ratio']:.2f} ({b['default_selector']})"
    return f"{b['lru_ratio']:.2f} (lru)"


def sec_replay(rep: dict[str, Any] | None) -> list[str]:
    """The same traces through the engine with the default policy (benchmarks/replay.py)."""
    if not rep or not rep.get("results"):
        return []
    from benchmarks import replay

    return [
        "",
        "Replay through the engine (real Redis, L2 and L3 files) with the default policy, "
        "one namespace, L1 capacity = its episodic `l1.capacity`: the share of requests "
        "served from each tier (miss: first sight, added), the L1 share next to Belady at "
        f"that capacity, and the moves of `demote`/`promote` (run every "
        f"{rep['jobs_every_min']:g} simulated min; moves/s over the jobs' own seconds), "
        "of reads from L2 (on read: the default's `promote.on_read: 1` brings the memory "
        "into L1 at once) and of `add` over capacity (evict) (benchmarks/replay.py).",
        "",
        *replay.markdown(rep),
    ]


def sec_lifecycle(r: dict[str, Any]) -> list[str]:
    lines = [
        f'`run("demote")` over N={r["n"]:,} memories, {r["namespaces"]} namespaces '
        '(benchmarks/lifecycle.py); `run("consolidate")` over as many episodes in topics '
        "of 10, on a store of its own, then once more after one new episode a topic "
        "(each joins its topic's semantic memory, which grows) (benchmarks/consolidation.py).",
        "",
        "| move | tiermem mem/s | limit | limit mem/s | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for key, label, lim in (
        ("l1_to_l2", "L1 → L2", "Arrow IPC segments + usearch add"),
        ("l2_to_l3", "L2 → L3", "zstd Parquet write"),
    ):
        x = r[key]
        lines.append(
            f"| {label} | {num(x['per_s'])} | {lim} | {num(x['limit_per_s'])} | {x['ratio']:.2f} |"
        )
        if "full_path_limit_per_s" in x:  # the same move done raw, source work included
            lines.append(
                f"| {label} | {num(x['per_s'])} | raw HGETALL + the same writes + DEL | "
                f"{num(x['full_path_limit_per_s'])} | {x['ratio_full_path']:.2f} |"
            )
    c = r.get("consolidate")
    if c:  # benchmarks/consolidation.py: topics of 10 near-duplicate episodes
        lines.append(
            f"| consolidate ({num(c['consolidated'])} episodes -> "
            f"{num(c['semantic_created'])} semantic) | {num(c['per_s'])} | "
            f"usearch add + zstd Parquet write | {num(c['limit_per_s'])} | {c['ratio']:.2f} |"
        )
    g = c.get("grow") if c else None
    if g:  # a second run: one more episode a topic joins its semantic memory
        lines.append(
            f"| consolidate, growth ({num(g['merged'])} new episodes -> {num(g['grown'])} "
            f"semantic memories grown) | {num(g['per_s'])} | usearch add + zstd Parquet write "
            f"| {num(g['limit_per_s'])} | {g['ratio']:.2f} |"
        )
    return lines


def sec_cold(r: dict[str, Any]) -> list[str]:
    lines = [
        "Per-tenant queries on the L3 tier vs the same DuckDB query on one unpartitioned "
        "file (benchmarks/cold.py; its full report is results/cold.md). ms: median "
        "(min-max) over repeats.",
        "",
        "| query | tenant (rows) | tiermem ms | one file ms | tiermem / limit |",
        "|---|---|---:|---:|---:|",
    ]
    tenants = r.get("tenants", {})
    for tenant, qs in r.get("queries", {}).items():
        rows = tenants.get(tenant, {}).get("rows")
        for q, v in qs.items():
            if not isinstance(v, dict) or "engine" not in v:
                continue
            e, b = v["engine"], v["baseline"]
            lines.append(
                f"| {q} | {tenant} ({num(rows) if rows else '?'}) | {num(e['median_ms'])} "
                f"({num(e['min_ms'])}-{num(e['max_ms'])}) | {num(b['median_ms'])} "
                f"({num(b['min_ms'])}-{num(b['max_ms'])}) | {v['ratio']:.2f} |"
            )
    return lines


def _memory_use_rows(l2: dict[str, Any], rp: float) -> list[str]:
    """L2 rows after the searches, and the RSS split into heap and mapped files
    (runs before either was measured have none)."""
    rows = []
    if "rss_growth_queries_per_memory" in l2:
        grown = l2["rss_growth_queries_per_memory"]
        after = l2["rss_per_memory"] + grown
        rows += [
            f"| L2 | RSS growth over {l2['queries']:,} searches after that (hit log, caches) | "
            f"{num(grown)} | {grown / rp:.2f} |",
            f"| L2 | RSS after those searches (at load + growth) | {num(after)} | "
            f"{after / rp:.2f} |",
        ]
    parts = l2.get("rss_parts_per_memory")
    if parts:
        rows.append(
            f"| L2 | of the RSS at load: heap (anonymous) / mapped segment pages (file) | "
            f"{num(parts['anon_at_load'])} / {num(parts['file_at_load'])} | "
            f"{parts['anon_at_load'] / rp:.2f} / {parts['file_at_load'] / rp:.2f} |"
        )
    return rows


def sec_memory(r: dict[str, Any]) -> list[str]:
    raw, l1, l2, l3 = r["raw"], r["l1"], r["l2"], r["l3"]
    rp = raw["per_memory"]
    return [
        f"N={r['n']:,} memories (core suite data); raw = float32 vector + UTF-8 text = "
        f"{rp:,.0f} B/memory (benchmarks/memory.py).",
        "",
        "| tier | what | bytes / memory | / raw |",
        "|---|---|---:|---:|",
        f"| L1 Redis | sum of MEMORY USAGE of its keys | {num(l1['per_memory'])} | "
        f"{l1['per_memory'] / rp:.2f} |",
        f"| L1 Redis | server used_memory delta (shared server) | "
        f"{num(l1['used_memory_delta_per_memory'])} | "
        f"{l1['used_memory_delta_per_memory'] / rp:.2f} |",
        f"| L2 | RSS of a fresh process with every namespace loaded (minus an empty store's) "
        f"| {num(l2['rss_per_memory'])} | {l2['rss_ratio_to_raw']:.2f} |",
        *_memory_use_rows(l2, rp),
        f"| L2 | disk: Arrow segments | {num(l2['disk']['segments'] / r['n'])} | "
        f"{l2['disk']['segments'] / r['n'] / rp:.2f} |",
        f"| L2 | disk: HNSW index files | {num(l2['disk']['index'] / r['n'])} | "
        f"{l2['disk']['index'] / r['n'] / rp:.2f} |",
        f"| L2 | disk: all (+ tombstones, access stats) | {num(l2['disk_per_memory'])} | "
        f"{l2['disk_ratio_to_raw']:.2f} |",
        f"| L3 | disk: zstd Parquet (+ manifest) | {num(l3['disk_per_memory'])} | "
        f"{l3['disk_ratio_to_raw']:.2f} |",
    ]


def sec_quality(r: dict[str, Any]) -> list[str]:
    rows = r["summary"]["rows"]
    lines = [
        f"LoCoMo evidence recall@10 ({r['conversations']} conversations, {r['questions']} "
        f"questions, {r['model']}); details in [results/locomo.md](results/locomo.md). "
        f"{r.get('credit', '')}",
        "",
        "| category | n | flat (limit) | tiered default | / flat | deep | / flat |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cat in ("1", "2", "3", "4", "1-4", "5"):
        x = rows[cat]
        if x["flat"] is None:
            continue
        f = x["flat"] or 1.0
        lines.append(
            f"| {cat} | {x['n']} | {x['flat']:.3f} | {x['tiered']:.3f} | {x['tiered'] / f:.2f} "
            f"| {x['deep']:.3f} | {x['deep'] / f:.2f} |"
        )
    return lines


SECTIONS = {
    "ingest": ("Ingest", sec_ingest),
    "search": ("Search", sec_search),
    "dedupe": ("Dedupe on write: add_many of semantic facts", sec_dedupe),
    "peers": ("Peers: chromadb, qdrant-client local, lancedb", sec_peers),
    "tiers": ("Tiers: eviction hit ratio vs Belady", sec_tiers),
    "lifecycle": ("Lifecycle moves", sec_lifecycle),
    "cold": ("Cold tier (L3)", sec_cold),
    "memory": ("Memory and disk per memory", sec_memory),
    "quality": ("Quality: LoCoMo", sec_quality),
}


# -- plots ---------------------------------------------------------------------------


def plots(res: dict[str, dict[str, Any]], d: Path) -> list[str]:
    """PNG files written into d (names); [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(d / name, dpi=110)
        plt.close(fig)
        made.append(name)

    ok = {n: r for n, r in res.items() if r["status"] == "ok"}
    if "search" in ok:
        s = ok["search"]["search"]
        bars = [("tiermem", s["tiermem"]), ("numpy exact\n(limit)", s["numpy"]),
                ("usearch\n(limit)", s["usearch"])]  # fmt: skip
        for name, p in ok.get("peers", {}).get("peers", {}).items():
            if p["status"] == "ok":
                bars.append((name, p["search"]))
        fig, ax = plt.subplots(figsize=(7, 3.8))
        xs = range(len(bars))
        ax.bar([x - 0.2 for x in xs], [b[1]["p50_ms"] for b in bars], 0.4, label="p50")
        ax.bar([x + 0.2 for x in xs], [b[1]["p99_ms"] for b in bars], 0.4, label="p99")
        ax.axhline(2.0, color="red", linestyle="--", linewidth=1, label="p99 goal 2 ms")
        ax.set_xticks(list(xs), [b[0] for b in bars], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms per query (log)")
        ax.set_title(f"Filtered top-10 search, N={ok['search']['params']['n']:,}")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        save(fig, "search.png")
    if "ingest" in ok:
        i = ok["ingest"]["ingest"]
        bars = [
            ("tiermem\nadd_many", i["tiermem_per_s"]),
            ("redis-py\npipeline (limit)", i["limit_per_s"]),
            ("tiermem\nL1→L2 move", ok["ingest"]["move"]["per_s"]),
        ]
        for name, p in ok.get("peers", {}).get("peers", {}).items():
            if p["status"] == "ok":
                bars.append((name, p["ingest"]["per_s"]))
        fig, ax = plt.subplots(figsize=(7, 3.8))
        ax.bar(range(len(bars)), [b[1] for b in bars], color="tab:green")
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("memories / s (log)")
        ax.set_title("Ingest, batches of 1,000, precomputed vectors")
        ax.grid(axis="y", alpha=0.3)
        save(fig, "ingest.png")
    if "tiers" in ok and ok["tiers"].get("results"):
        from benchmarks import hitratio

        hitratio.plot(ok["tiers"], d / "tiers.png")
        made.append("tiers.png")
    if "cold" in ok and ok["cold"].get("queries"):
        labels, ratios = [], []
        for tenant, qs in ok["cold"]["queries"].items():
            for q, v in qs.items():
                if isinstance(v, dict) and "ratio" in v:
                    labels.append(f"{q}\n{tenant}")
                    ratios.append(v["ratio"])
        fig, ax = plt.subplots(figsize=(8, 3.8))
        ax.bar(range(len(ratios)), ratios, color="tab:purple")
        ax.axhline(1.0, color="black", linewidth=1)
        ax.axhline(0.1, color="red", linestyle="--", linewidth=1, label="goal: ≤ 0.1 (10× faster)")
        ax.set_xticks(range(len(ratios)), labels, fontsize=6)
        ax.set_yscale("log")
        ax.set_ylabel("tiermem / one-file limit (log)")
        ax.set_title("Cold tier queries, ratio to the unpartitioned-file limit")
        ax.legend(fontsize=8)
        save(fig, "cold.png")
    if "memory" in ok:
        m = ok["memory"]
        rp = m["raw"]["per_memory"]
        bars = [("raw\nvector+text", rp), ("L1 Redis\nMEMORY USAGE", m["l1"]["per_memory"]),
                ("L2 RSS", m["l2"]["rss_per_memory"]), ("L2 disk", m["l2"]["disk_per_memory"]),
                ("L3 disk", m["l3"]["disk_per_memory"])]  # fmt: skip
        fig, ax = plt.subplots(figsize=(7, 3.8))
        ax.bar(range(len(bars)), [b[1] for b in bars], color="tab:orange")
        ax.axhline(1.5 * rp, color="red", linestyle="--", linewidth=1, label="L2 RSS goal 1.5× raw")
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
        ax.set_ylabel("bytes / memory")
        ax.set_title(f"Bytes per memory, N={m['n']:,}")
        ax.legend(fontsize=8)
        save(fig, "memory.png")
    return made


# -- document ------------------------------------------------------------------------


def headline(res: dict[str, dict[str, Any]]) -> list[str]:
    return goal_table(res)


def render(d: Path) -> Path:
    res = load(d)
    target = HERE / "RESULTS.md" if d.resolve() == RESULTS.resolve() else d / "RESULTS.md"
    rel = "results/" if target.parent != d else ""
    made = plots(res, d)
    quick = any(r["quick"] for r in res.values())
    first = next(iter(res.values()), {})
    # the harness records a dict; tiers' own JSON (hitratio.py) a plain string
    mach: dict[str, Any] = next(
        (r["machine"] for r in res.values() if isinstance(r.get("machine"), dict)), {}
    )
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python -m benchmarks run{' --quick' if quick else ''}` "
        "(then `python -m benchmarks report`) from the suites' JSONs. The machine is "
        "shared and noisy: read the ratios (tiermem / a limit measured in the same run), "
        "not the absolute figures. Latencies are per-query p50/p99; rates are from the "
        "median batch.",
        "",
        f"Machine: {mach.get('cpu', '?')}, {mach.get('cpus', '?')} cpus, "
        f"{mach.get('ram_gib', '?')} GiB, {mach.get('platform', '?')}; versions: "
        + ", ".join(f"{k} {v}" for k, v in first.get("versions", {}).items()),
        "",
        "## Goals",
        "",
        *goal_table(res),
        "",
        "## Runs",
        "",
        *run_table(res),
    ]
    for name, (title, fn) in SECTIONS.items():
        r = res.get(name)
        if r is None:
            continue
        lines += ["", f"## {title}", ""]
        if r["status"] != "ok" or r.get("reason"):
            lines.append(f"{r['status']}: {r.get('reason')}")
            lines.append("")
        if r["status"] != "ok":
            continue
        try:
            lines += fn(r)
        except (KeyError, TypeError, ZeroDivisionError) as e:
            lines.append(f"(could not render: {type(e).__name__}: {e})")
        png = {"tiers": "tiers.png", "cold": "cold.png", "memory": "memory.png"}.get(name)
        png = png or {"ingest": "ingest.png", "search": "search.png"}.get(name)
        if png and png in made:
            lines += ["", f"![{name}]({rel}{png})"]
    if not made:
        lines += ["", "(no plots: matplotlib is not installed)"]
    log = d / "perf-log.md"  # hand-kept before/after of the performance work
    if log.exists():
        lines += ["", "## Performance work: before and after", "", log.read_text().strip()]
    target.write_text("\n".join(lines) + "\n")
    return target


def readme(d: Path = RESULTS, path: Path = HERE.parent / "README.md") -> Path:
    """Copy the goal table into README.md between the bench markers."""
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path}: no {START} ... {END} markers")
    res = load(d)
    dates = sorted(r["date"][:10] for r in res.values())
    block = [
        START,
        f"Generated by `{COMMAND}` on the 2-core dev machine "
        f"({dates[0] if dates else '?'}"
        f"{' to ' + dates[-1] if dates and dates[-1] != dates[0] else ''}); each figure is "
        "tiermem next to a limit measured in the same run. Details, spreads and plots: "
        "[benchmarks/RESULTS.md](benchmarks/RESULTS.md).",
        "",
        "Wall time of these runs (2 shared cores): "
        + ", ".join(
            f"{name} {r['wall_s']:.0f} s" + (" (with search)" if name == "ingest" else "")
            for name, r in res.items()
            if name != "search" and r.get("wall_s")
        )
        + ".",
        "",
        *[f"- {name}: {r['reason']}." for name, r in res.items() if r.get("reason")],
        "",
        *headline(res),
        END,
    ]
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(head + "\n".join(block) + tail)
    return path
