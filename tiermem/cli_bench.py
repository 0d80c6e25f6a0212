"""`tiermem bench`: the benchmark harness (`python -m benchmarks run`) from the CLI.

The benchmarks live in the repository (`benchmarks/`), not in the installed
package: they need the repo's data rules, the peers extra and the results
directory. So the command finds a checkout (the one an editable install
points at, else the current directory) and runs the harness there, with
this interpreter; any arguments pass through (suites, ``--quick``,
``--out DIR``, ``--no-report``, ``--readme``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

import tiermem
from tiermem.errors import ConfigError

RepoOpt = Annotated[
    Path | None,
    typer.Option("--repo", help="The tiermem checkout holding benchmarks/ (default: found)."),
]


def find_repo(given: Path | None = None) -> Path:
    """The checkout whose ``benchmarks/runner.py`` to run; raises ConfigError if none."""
    here = Path(tiermem.__file__).resolve().parent.parent
    places = [given] if given is not None else [here, Path.cwd()]
    for root in places:
        if (root / "benchmarks" / "runner.py").is_file():
            return root
    where = ", ".join(str(p) for p in places)
    raise ConfigError(
        f"no benchmarks/ found in {where}: the benchmarks live in the tiermem repository; "
        "run this from a checkout (or an editable install: pip install -e .), or pass --repo"
    )


def bench(ctx: typer.Context, repo: RepoOpt = None) -> None:
    """Run the benchmarks: `tiermem bench [SUITE...] [--quick] [--out DIR] [--no-report]`."""
    root = find_repo(repo)
    cmd = [sys.executable, "-m", "benchmarks", "run", *ctx.args]
    raise typer.Exit(subprocess.run(cmd, cwd=root, check=False).returncode)
