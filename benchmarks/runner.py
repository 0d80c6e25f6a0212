"""Runs benchmark suites and writes one JSON per suite, with the machine and versions.

Each suite is a function `(quick, out) -> dict` (`out` is the directory its
JSON goes to, for suites that write side files such as plots). A suite that
cannot run here (a missing extra, data file or module) raises `Skip`; its
JSON then says `"status": "skipped"` and why, and the run goes on.

Full runs write `benchmarks/results/<suite>.json`; quick runs (CI smoke) write
into `--out` or a temporary directory, never into the repo.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

# One query at a time on a small shared host: see benchmarks/core.py.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SUITES = (
    "ingest", "search", "dedupe", "tiers", "lifecycle", "cold", "memory", "quality", "peers",
)  # fmt: skip
PACKAGES = (
    "tiermem", "redis", "hiredis", "usearch", "numpy", "pyarrow", "duckdb", "zstandard",
    "psutil", "matplotlib", "chromadb", "qdrant-client", "lancedb", "pylance",
    "sentence-transformers", "torch",
)  # fmt: skip


class Skip(Exception):
    """A suite cannot run here; the message says why."""


# What a run writes itself: a suite after the first would otherwise always say "dirty".
OWN_OUTPUT = (":(exclude)benchmarks/results", ":(exclude)benchmarks/RESULTS.md")


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the work tree (results aside) differed from it."""
    run: dict[str, Any] = {"capture_output": True, "text": True, "check": True, "timeout": 10}
    git = ["git", "-C", str(HERE.parent)]
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], **run)
        dirty = subprocess.run([*git, "status", "--porcelain", "--", ".", *OWN_OUTPUT], **run)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return {}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def versions() -> dict[str, str]:
    """Installed versions of the packages that matter (absent ones left out)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    try:
        import psutil

        info["ram_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except (ImportError, OSError):
        pass
    return info


def meta() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": machine(),
        "versions": versions(),
    }


def _suite(name: str) -> Callable[[bool, Path], dict[str, Any]]:
    """The suite's function; suites import lazily so a missing extra only skips one."""
    return importlib.import_module("benchmarks.suites").__dict__[f"suite_{name}"]  # type: ignore[no-any-return]


def write(out: Path, name: str, report: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


def run_suites(
    names: list[str], quick: bool, out: Path | None
) -> tuple[Path, list[dict[str, Any]]]:
    """Run `names` in order; returns the directory written and a line per suite."""
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="tiermem-bench-")) if quick else RESULTS
    summary = []
    for name in names:
        started = time.perf_counter()
        head = {"suite": name, "quick": quick, **meta()}
        print(f"== {name}{' (quick)' if quick else ''}", flush=True)
        try:
            body = _suite(name)(quick, out)
            status, reason = "ok", None
        except Skip as e:
            body, status, reason = {}, "skipped", str(e)
        except Exception as e:  # one failed suite must not hide the others
            traceback.print_exc()
            body, status, reason = {}, "failed", f"{type(e).__name__}: {e}"
        wall = time.perf_counter() - started
        report = {**head, "status": status, "reason": reason, "wall_s": round(wall, 1), **body}
        path = write(out, name, report)
        line = {"suite": name, "status": status, "reason": reason, "wall_s": round(wall, 1)}
        summary.append(line)
        print(f"-- {name}: {status}{f' ({reason})' if reason else ''}, {wall:.1f} s -> {path}")
    return out, summary


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run suites (all when none is named), then the report")
    r.add_argument("suites", nargs="*", metavar="SUITE", help=f"any of: {', '.join(SUITES)}")
    r.add_argument("--quick", action="store_true", help="small sizes (CI smoke), < 60 s in all")
    r.add_argument("--out", type=Path, default=None, help="results directory (quick: a temp dir)")
    r.add_argument("--no-report", action="store_true", help="skip rendering RESULTS.md")
    p = sub.add_parser("report", help="render RESULTS.md and plots from the results JSONs")
    p.add_argument("--dir", type=Path, default=RESULTS, help="the results directory")
    p.add_argument("--readme", action="store_true", help="also copy the goals into README.md")
    args = ap.parse_args(argv)
    from benchmarks import report

    if args.cmd == "report":
        print(f"wrote {report.render(args.dir)}")
        if args.readme:
            print(f"wrote {report.readme(args.dir)}")
        return 0
    names = args.suites or list(SUITES)
    bad = [n for n in names if n not in SUITES]
    if bad:
        ap.error(f"unknown suite(s) {bad}; choose from {', '.join(SUITES)}")
    out, summary = run_suites(names, args.quick, args.out)
    if not args.no_report:
        print(f"wrote {report.render(out)}")
    failed = [s["suite"] for s in summary if s["status"] == "failed"]
    for s in summary:
        print(f"{s['suite']:10} {s['status']:8} {s['wall_s']:7.1f} s  {s['reason'] or ''}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0
