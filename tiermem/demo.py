"""`tiermem demo`: a tour of the engine on the embedded defaults, in seconds."""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import tiermem
from tiermem.model import Hit

ALICE = [
    "Alice drinks green tea every morning, never coffee.",
    "Alice is allergic to peanuts.",
    "Alice's daughter Maya starts school in September.",
    "Alice runs 5k on Saturdays in Riverside Park.",
    "Alice asked for vegetarian restaurant ideas in Lisbon.",
    "Alice prefers answers with short bullet points.",
    "Alice is learning Portuguese before her trip.",
    "Alice's laptop is a 2021 ThinkPad running Fedora.",
]
BOB = [
    "Bob drinks espresso, two shots, no sugar.",
    "Bob is planning a hiking trip to the Alps.",
    "Bob works night shifts at the hospital.",
]


VISITS = [
    f"Alice ordered a matcha latte at the Blue Bottle cafe on {day} morning."
    for day in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
]


def _consolidation(console: Console, mem: tiermem.Engine) -> None:
    """Old, similar episodes become one semantic memory; the episodes go cold."""
    week_ago = datetime.now(UTC) - timedelta(days=7)
    mem.add_many(
        [{"text": t, "created_at": week_ago + timedelta(days=i)} for i, t in enumerate(VISITS)],
        namespace="user:alice",
    )
    q = "SELECT kind, tier, count(*) AS n FROM memories GROUP BY ALL ORDER BY ALL"
    before = mem.sql(q, namespace="user:alice").to_pylist()
    report = mem.run("consolidate")
    after = mem.sql(q, namespace="user:alice").to_pylist()
    table = Table(
        "kind",
        "tier",
        "before",
        "after",
        title="8. consolidate: 5 similar episodes",
        title_justify="left",
    )
    keys = sorted({(r["kind"], r["tier"]) for r in before + after})

    def count(rows: list[dict[str, Any]], key: tuple[str, str]) -> int:
        return next((r["n"] for r in rows if (r["kind"], r["tier"]) == key), 0)

    for k in keys:
        table.add_row(k[0], k[1], str(count(before, k)), str(count(after, k)))
    console.print(table)
    for m in mem.scan(namespace="user:alice", kinds=["semantic"]):
        console.print(f"   semantic memory from {len(m.source_ids)} episodes: {m.text!r}")
    console.print(f"   (merged {report.merged}, moved {report.moved} episodes to L3)")


def _hits(console: Console, title: str, hits: list[Hit]) -> None:
    console.print(title)  # above the table, not its title: a title wraps at the table's width
    table = Table("score", "tier", "text")
    for h in hits:
        table.add_row(f"{h.score:.3f}", h.tier, h.memory.text)
    console.print(table)


def run_demo(console: Console, keep: Path | None = None) -> None:
    """Add → search → demote → deep search → SQL → consolidate, in a temp dir (or `keep`)."""
    root = keep or Path(tempfile.mkdtemp(prefix="tiermem-demo-"))
    started = time.perf_counter()
    console.rule("tiermem demo")
    console.print(f"data dir: {root} (embedded Redis, no config)")
    try:
        with tiermem.open(root) as mem:
            console.print(f"embedder: {type(mem.embedder).__name__} ({mem.dim}-d)")
            alice = mem.add_many([{"text": t} for t in ALICE], namespace="user:alice")
            mem.add_many([{"text": t} for t in BOB], namespace="user:bob")
            console.print(
                f"1. added {len(ALICE)} memories for user:alice, {len(BOB)} for user:bob "
                "(all in L1 hot)"
            )
            _hits(
                console,
                "2. search user:alice 'what does she drink?'",
                mem.search("what does she drink?", namespace="user:alice", k=3),
            )
            ids = [i for i in alice.ids if i]
            for id_ in ids[:4]:
                mem.demote(id_, to="l2")
            for id_ in ids[:2]:
                mem.demote(id_, to="l3")
            console.print("3. demoted 2 memories to L2 warm and 2 to L3 cold (crash-safe moves)")
            below = mem.config.search.deep_below
            _hits(
                console,
                "4. default search 'morning drink': L1+L2, and L3 as well when their "
                f"3rd best score is below search.deep_below ({below})",
                mem.search("morning drink", namespace="user:alice", k=3),
            )
            _hits(
                console,
                "5. deep search (deep=True) always reads L3 cold too",
                mem.search("morning drink", namespace="user:alice", k=3, deep=True),
            )
            q = "SELECT namespace, tier, count(*) AS n FROM memories GROUP BY ALL ORDER BY ALL"
            result = mem.sql(q)
            console.print(f"6. SQL over every tier (DuckDB): {q}")
            table = Table(*result.column_names)
            for row in result.to_pylist():
                table.add_row(*(str(v) for v in row.values()))
            console.print(table)
            s = mem.stats()
            console.print("7. stats: " + ", ".join(f"{t}={s.tiers[t].count}" for t in s.tiers))
            _consolidation(console, mem)
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    console.rule(f"done in {time.perf_counter() - started:.1f}s")
