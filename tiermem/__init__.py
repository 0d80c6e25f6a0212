"""tiermem: a tiered memory engine for AI agents.

L1 hot in Redis, L2 warm in an in-process usearch index over Arrow
segments, L3 cold in zstd Parquet queried with DuckDB; memories move
between them crash-safely.

>>> import tiermem
>>> {"open", "Engine", "Memory", "TierMemError"} <= set(tiermem.__all__)
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiermem.config import Config, load_config
from tiermem.consolidate import CallableSummarizer, ExtractiveSummarizer, Summarizer
from tiermem.embed import Embedder, HashingEmbedder, MiniLMEmbedder
from tiermem.engine import Engine
from tiermem.errors import (
    CapacityError,
    ConfigError,
    LockedError,
    NotFound,
    PolicyError,
    QueryError,
    TierMemError,
    TierUnavailable,
    ValidationError,
)
from tiermem.ids import Clock
from tiermem.model import (
    Action,
    BatchResult,
    Hit,
    JobReport,
    Memory,
    MemoryIn,
    Plan,
    Stats,
    TierStats,
)

__version__ = "0.1.0"


def open(
    path: str | Path = ".tiermem",
    config: Config | dict[str, Any] | str | Path | None = None,
    *,
    clock: Clock | None = None,
    embedder: Embedder | None = None,
    policy: str | None = None,
    read_only: bool = False,
    **overrides: Any,
) -> Engine:
    """Open (creating if needed) the store in `path`; returns an `Engine`.

    `config` is a Config, a dict or a TOML/YAML/JSON file; `overrides` are
    dotted keys (``**{"l1.url": "redis://localhost:6379/0"}``) that win over
    the environment (``TIERMEM_*``) and the file.
    """
    cfg = load_config(config, overrides)
    return Engine(path, cfg, clock=clock, embedder=embedder, policy=policy, read_only=read_only)


__all__ = [
    "Action",
    "BatchResult",
    "CallableSummarizer",
    "CapacityError",
    "Clock",
    "Config",
    "ConfigError",
    "Embedder",
    "Engine",
    "ExtractiveSummarizer",
    "HashingEmbedder",
    "Hit",
    "JobReport",
    "LockedError",
    "Memory",
    "MemoryIn",
    "MiniLMEmbedder",
    "NotFound",
    "Plan",
    "PolicyError",
    "QueryError",
    "Stats",
    "Summarizer",
    "TierMemError",
    "TierStats",
    "TierUnavailable",
    "ValidationError",
    "open",
]
