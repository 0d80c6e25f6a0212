"""`tiermem config show|check`: the effective configuration, and validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tiermem.config import load_config
from tiermem.lifecycle.policy import load_policy

app = typer.Typer(help="Show or check the configuration (files < TIERMEM_* env < flags).")
out = Console()

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", envvar="TIERMEM_CONFIG", help="Config file.")
]


@app.command()
def show(config: ConfigOpt = None) -> None:
    """Print the effective configuration as JSON (every key, with its value)."""
    cfg = load_config(config)
    out.print_json(json.dumps(cfg.model_dump(mode="json")))


@app.command()
def check(config: ConfigOpt = None) -> None:
    """Validate the configuration and the policy it names; exit 1 with the reason if bad."""
    cfg = load_config(config)
    policy = load_policy(cfg.policy)
    where = config or "defaults + environment"
    out.print(f"ok: config {where}; policy {policy.name!r} ({policy.source or 'built in'})")
