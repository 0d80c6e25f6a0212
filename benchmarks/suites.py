"""The suites of `python -m benchmarks run`: each `(quick, out) -> dict`.

Every figure is next to a limit measured in the same run; `goals` lists the
issue's targets, each with the figure, the target and whether it is met.
Modules are imported inside each suite, so a missing optional package skips
that suite only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from benchmarks.runner import Skip


def goal(
    name: str, value: float | None, target: str, ok: bool | None, **extra: Any
) -> dict[str, Any]:
    """One goal row: `ok` None means it could not be judged (the figure is missing)."""
    return {"goal": name, "value": value, "target": target, "met": ok, **extra}


def has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# -- tiers ---------------------------------------------------------------------------


def suite_tiers(quick: bool, out: Path) -> dict[str, Any]:
    from benchmarks import hitratio, replay

    report = tiers_summary(hitratio.run(quick, None if quick else out))
    report["replay"] = replay.run(quick)  # the same traces through the engine
    report["goals"] += replay_goals(report["replay"])
    return report


def replay_goals(replay: dict[str, Any]) -> list[dict[str, Any]]:
    """Per trace, the engine's L1 hit ratio under the default policy over Belady's
    at the same capacity; on IRM traces also the static oracle's bound."""
    return [
        goal(
            f"tiers replay (default policy, engine): L1 hit ratio / Belady, {r['trace']} "
            f"(C={r['capacity']:,}, {r['capacity_pct']:g}% of keys{_bound(r)})",
            r["ratio_to_belady"],
            ">= 0.9x",
            None if r["ratio_to_belady"] is None else r["ratio_to_belady"] >= 0.9,
            tiermem=r["l1_hit_ratio"],
            limit=r["belady"],
        )
        for r in replay["results"]
    ]


def _bound(r: dict[str, Any]) -> str:
    """What the static oracle says of a replay row (IRM traces; none before 2026-11-24)."""
    bound = r.get("oracle_to_belady")
    if bound is None:
        return ""
    reach = "unreachable for online policies" if bound < 0.9 else "reachable"
    return f"; static oracle {bound:.2f}x Belady: {reach}, L1 at {r['ratio_to_oracle']:.2f}x it"


def default_selector() -> str:
    """The selector the shipped default policy evicts episodic L1 memories by
    (the last of its ``evict`` list: ``ttl`` before it only takes expired ones)."""
    from tiermem.lifecycle.policy import load_policy

    return load_policy("default").for_kind("episodic").l1.evict[-1]


def tiers_summary(report: dict[str, Any]) -> dict[str, Any]:
    """Adds, per trace x capacity, the default and the best selector's ratio to
    Belady, and the goal: the default policy's L1 rule within 10% of Belady."""
    rows = report["results"]
    rule = default_selector()
    cells = sorted({(r["trace"], r["capacity_pct"]) for r in rows})
    best = []
    for trace, cap in cells:
        cands = [r for r in rows if (r["trace"], r["capacity_pct"]) == (trace, cap)]
        top = max((r for r in cands if r["selector"] != "belady"), key=lambda r: r["hit_ratio"])
        mine = next(r for r in cands if r["selector"] == rule)
        best.append(
            {
                "trace": trace,
                "capacity_pct": cap,
                "belady": next(r["hit_ratio"] for r in cands if r["selector"] == "belady"),
                "best_selector": top["selector"],
                "best_ratio": top["ratio_to_belady"],
                "default_selector": rule,
                "default_ratio": mine["ratio_to_belady"],
            }
        )
    met = [b for b in best if (b["default_ratio"] or 0) >= 0.9]
    best_met = [b for b in best if (b["best_ratio"] or 0) >= 0.9]
    report["best_per_cell"] = best
    report["goals"] = [
        goal(
            f"tiers: the default policy's L1 selector ({rule}) within 10% of Belady",
            len(met) / len(best),
            ">= 0.9 x Belady in every trace x capacity cell",
            len(met) == len(best),
            detail=f"{len(met)} of {len(best)} cells; the best shipped selector per cell: "
            f"{len(best_met)} of {len(best)}",
        )
    ]
    return report


# -- ingest and search (one core run serves both, and the peers) -----------------------

_CORE: dict[bool, dict[str, Any]] = {}


def _core(quick: bool) -> dict[str, Any]:
    from benchmarks import core

    if quick not in _CORE:
        _CORE[quick] = core.run(quick)
    return _CORE[quick]


def _params(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "dim", "namespaces", "queries", "k", "seed", "overrides", "namespace_sizes")
    return {k: r[k] for k in keys} | {
        "redis_server": r["redis_server"],
        "core_wall_s": r["wall_s"],  # ingest, move and search: one run of benchmarks/core.py
        "core_started": r["timestamp"],
        "core_git": r["git"],
    }


def suite_ingest(quick: bool, out: Path) -> dict[str, Any]:
    r = _core(quick)
    ing = r["ingest"]
    ratio = ing["tiermem_per_s"] / ing["limit_per_s"]
    return {
        "params": _params(r),
        "ingest": ing,
        "move": r["move"] | {"ratio_to_ingest": r["move"]["per_s"] / ing["tiermem_per_s"]},
        "goals": [
            goal(
                "ingest: add_many vs raw redis-py pipeline (memories/s)",
                ratio,
                ">= 0.5x",
                ratio >= 0.5,
                tiermem=ing["tiermem_per_s"],
                limit=ing["limit_per_s"],
            )
        ],
    }


def suite_search(quick: bool, out: Path) -> dict[str, Any]:
    r = _core(quick)
    s = r["search"]
    t = s["tiermem"]
    lim_name = min(("numpy", "usearch"), key=lambda m: s[m]["p50_ms"])
    lim = s[lim_name]["p50_ms"]
    return {
        "params": _params(r),
        "search": s,
        "goals": [
            goal(
                f"search p50 (ms) vs the faster limit ({lim_name})",
                t["p50_ms"] / lim,
                "<= 1.5x",
                t["p50_ms"] / lim <= 1.5,
                tiermem=t["p50_ms"],
                limit=lim,
            ),
            goal("search p99 (ms)", t["p99_ms"], "<= 2 ms", t["p99_ms"] <= 2.0),
            goal(
                "search recall@10 vs numpy exact",
                s["recall_at_10"],
                ">= 0.98",
                s["recall_at_10"] >= 0.98,
            ),
        ],
    }


# -- lifecycle, cold, memory, quality ------------------------------------------------


def suite_lifecycle(quick: bool, out: Path) -> dict[str, Any]:
    from benchmarks import lifecycle

    r = lifecycle.run(quick)
    goals = [
        goal(
            f"lifecycle {label}: run('demote') vs {lim} (memories/s)",
            r[key]["ratio"],
            ">= 0.5x",
            r[key]["ratio"] >= 0.5,
            tiermem=r[key]["per_s"],
            limit=r[key]["limit_per_s"],
        )
        for key, label, lim in (
            ("l1_to_l2", "L1->L2", "raw Arrow IPC write + usearch add"),
            ("l2_to_l3", "L2->L3", "raw zstd Parquet write"),
        )
    ]
    c = r.get("consolidate")
    if c:
        goals.append(
            goal(
                "lifecycle consolidate: run('consolidate') vs raw usearch add + zstd Parquet "
                "write (episodes/s)",
                c["ratio"],
                ">= 0.5x",
                c["ratio"] >= 0.5,
                tiermem=c["per_s"],
                limit=c["limit_per_s"],
            )
        )
    return r | {"goals": goals}


def suite_cold(quick: bool, out: Path) -> dict[str, Any]:
    from benchmarks import cold

    return cold_goals(dict(cold.run(quick, out)))


def cold_goals(r: dict[str, Any]) -> dict[str, Any]:
    """The issue's goal from cold's own figures (its ratio = tiermem ms / limit ms)."""

    def pruning(tenant: str) -> str:
        # the limit scans every row; skipping the other tenants' files alone gains
        # at most all rows / the tenant's rows (the rest must be per-row speed)
        rows = r.get("tenants", {}).get(tenant, {}).get("rows")
        return f"; pruning alone: at most {r['n'] / rows:.1f}x" if rows and r.get("n") else ""

    if "goals" not in r:
        r["goals"] = [
            goal(
                f"cold: per-tenant top-10 search ({tenant}{pruning(tenant)}) "
                "vs one unpartitioned file",
                1 / v["search_tier"]["ratio"],
                ">= 10x faster",
                1 / v["search_tier"]["ratio"] >= 10,
                tiermem=v["search_tier"]["engine"]["median_ms"],
                limit=v["search_tier"]["baseline"]["median_ms"],
            )
            for tenant, v in r.get("queries", {}).items()
            if isinstance(v, dict) and v.get("search_tier", {}).get("ratio")
        ]
    return r


def suite_memory(quick: bool, out: Path) -> dict[str, Any]:
    from benchmarks import memory

    r = memory.run(quick)
    ratio = r["l2"]["rss_ratio_to_raw"]
    return r | {
        "goals": [
            goal(
                "memory: L2 RSS vs raw vector+text bytes",
                ratio,
                "<= 1.5x",
                ratio <= 1.5,
                tiermem=r["l2"]["rss_per_memory"],
                limit=r["raw"]["per_memory"],
            )
        ]
    }


def suite_dedupe(quick: bool, out: Path) -> dict[str, Any]:
    from benchmarks import dedupe

    r = dedupe.run(quick)
    r["goals"] = [
        goal(
            "dedupe: batched add_many of semantic facts vs one add at a time (facts/s)",
            r["speedup_vs_one_by_one"],
            "faster, same outcome",
            r["same_outcome"] and r["speedup_vs_one_by_one"] > 1,
            tiermem=r["batched"]["per_s"],
            limit=r["one_by_one"]["per_s"],
        )
    ]
    return r


def suite_quality(quick: bool, out: Path) -> dict[str, Any]:
    from benchmarks import locomo

    if not locomo.DEFAULT_DATA.exists():
        raise Skip(f"LoCoMo data not found at {locomo.DEFAULT_DATA} (see benchmarks/locomo.py)")
    if not has("sentence_transformers"):
        raise Skip("needs the embed extra: pip install torch==2.13.0 && pip install '.[embed]'")
    r = locomo.run(quick, None if quick else out)
    r.pop("tiered_store", None)  # per-conversation detail: in locomo.md
    a, b = r["ratio_tiered_flat"], r["ratio_deep_flat"]
    return r | {
        "goals": [
            goal("quality: LoCoMo recall@10, tiered default / flat", a, ">= 0.95", a >= 0.95),
            goal("quality: LoCoMo recall@10, deep / flat", b, ">= 1.0", b >= 1.0),
        ]
    }


# -- peers ---------------------------------------------------------------------------


def suite_peers(quick: bool, out: Path) -> dict[str, Any]:
    from benchmarks import peers

    if not peers.installed():
        raise Skip("none of chromadb, qdrant-client, lancedb is installed: pip install '.[bench]'")
    r = peers.run(quick, _core(quick))
    tm, ok = r["tiermem"], {p: v for p, v in r["peers"].items() if v["status"] == "ok"}
    goals = []
    for p in ("chromadb", "qdrant"):
        if p in ok:
            x = ok[p]["ratios"]["ingest_tiermem_over_peer"]
            goals.append(
                goal(f"ingest vs {p} (memories/s)", x, ">= 10x", x >= 10,
                     tiermem=tm["ingest_per_s"], limit=ok[p]["ingest"]["per_s"])
            )  # fmt: skip
        else:
            goals.append(goal(f"ingest vs {p}", None, ">= 10x", None, detail="peer did not run"))
    good = {p: v for p, v in ok.items() if v["search"]["recall_at_10"] >= 0.95}
    if good:
        fastest = min(good, key=lambda p: good[p]["search"]["p50_ms"])
        x = good[fastest]["ratios"]["search_p50_peer_over_tiermem"]
        goals.append(
            goal(f"search p50: fastest peer at recall >= 0.95 ({fastest}) / tiermem", x,
                 ">= 20x", x >= 20, tiermem=tm["p50_ms"], limit=good[fastest]["search"]["p50_ms"])
        )  # fmt: skip
    else:
        goals.append(goal("search vs fastest peer", None, ">= 20x", None, detail="no peer ran"))
    return r | {"goals": goals}
