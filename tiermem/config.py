"""Typed, frozen configuration, and the on-disk format stored with the data.

Sources, strongest first: keyword overrides (dotted keys) > ``TIERMEM_*``
environment variables (``TIERMEM_L1__URL``; ``__`` separates sections) >
a config file (TOML, YAML or JSON) > defaults. ``configs/default.toml``
documents every key.

Settings that fix the on-disk format (embedding dimension, metric, codecs)
are written to ``<data dir>/format.json`` on first open and checked on every
later open: a mismatch is a `ConfigError`, never a silent corruption.

>>> cfg = load_config(None, {"l1.url": "redis://localhost:6379/0"})
>>> cfg.l1.url, cfg.embedding.dim
('redis://localhost:6379/0', 384)
"""

from __future__ import annotations

import json
import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tiermem.errors import ConfigError
from tiermem.ids import new_id

FORMAT_VERSION = 1
_file_values: ContextVar[dict[str, Any] | None] = ContextVar("_file_values", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class L1Config(_Section):
    url: str | None = None  # redis://… or unix://…; None starts an embedded Redis
    prefix: str | None = None  # key prefix; None derives "tm:<store id>"
    socket_timeout: float = Field(5.0, gt=0)
    # How L1 search knows its in-process copy of a namespace is current:
    # "tracking" = Redis pushes invalidations (no round trip per search; other
    # processes' writes show once their push arrives), "validate" = one GET
    # per search. See tiermem/tiers/hot_cache.py.
    cache: Literal["tracking", "validate"] = "tracking"


class L2Config(_Section):
    # Exact numpy search below this many rows per namespace (why 20k: the
    # crossover table at tiers.warm.DEFAULT_EXACT_THRESHOLD, which is this).
    exact_threshold: int = Field(20_000, ge=0)
    connectivity: int = Field(16, ge=2)
    expansion_add: int = Field(128, ge=1)
    expansion_search: int = Field(64, ge=1)
    dtype: Literal["f32", "f16", "bf16", "i8"] = "bf16"


class L3Config(_Section):
    codec: Literal["zstd"] = "zstd"  # format setting
    zstd_level: int = Field(3, ge=1, le=22)
    # 10k-row groups: gets of one id skip most of a file (23 ms vs 129 ms at 100k rows, 384-d)
    row_group_size: int = Field(10_000, ge=1_000)
    # How new L3 files (and compaction output) store vectors; not a format
    # setting: files say their own precision and every read returns float32.
    vector_precision: Literal["float32", "float16"] = "float32"


class EmbeddingConfig(_Section):
    model: Literal["auto", "minilm", "hashing"] = "auto"
    dim: int = Field(384, ge=2, le=8192)  # format setting
    metric: Literal["cosine"] = "cosine"  # format setting


class SearchConfig(_Section):
    # Also search L3 when hot+warm return fewer than k hits or their k-th
    # best score is below this (API.md, "Which tiers a search reads"; the
    # k-th, not the best, keeps default recall near flat). LoCoMo with
    # MiniLM after the default lifecycle (benchmarks/locomo.py), recall@10
    # of flat: 0.944 at 0.5, 0.995 at 0.55 (L3 read by 89% / 97% of searches).
    deep_below: float = Field(0.55, ge=-1.0, le=1.0)


class SchedulerConfig(_Section):
    """Seconds between runs of each lifecycle job (0 disables it)."""

    demote: float = Field(300, ge=0)
    promote: float = Field(60, ge=0)
    expire: float = Field(600, ge=0)
    checkpoint: float = Field(300, ge=0)
    compact: float = Field(3600, ge=0)
    # 0: every policy's shortest `consolidate.every`; a number overrides it
    consolidate: float = Field(0, ge=0)
    lease: float = Field(30, gt=0)  # cross-process job lock lease (renewed by a heartbeat)
    # Seconds between checks of the policy file (a path, not a shipped name) for
    # edits, in each process running a scheduler; 0: reload only on SIGHUP.
    policy_watch: float = Field(2.0, ge=0)

    def intervals(self) -> dict[str, float]:
        return {
            j: getattr(self, j) for j in ("demote", "promote", "expire", "checkpoint", "compact")
        }


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class LogConfig(_Section):
    """Logging of `tiermem worker` (tiermem.obs.logs.configure_from)."""

    level: LogLevel = "INFO"
    format: Literal["text", "json"] = "text"  # json: one object a line (time, level, logger, …)
    modules: dict[str, LogLevel] = Field(default_factory=dict)  # logger name -> level


class MovesConfig(_Section):
    batch: int = Field(1_000, ge=1)  # memories per crash-safe move batch
    # ... into L3, where each batch writes one Parquet file per namespace: larger
    # batches give fewer, larger files (row groups are 10k) and fewer fsyncs
    cold_batch: int = Field(10_000, ge=1)


class Config(BaseSettings):
    """The whole configuration. Frozen: build a new one to change it."""

    model_config = SettingsConfigDict(
        env_prefix="TIERMEM_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    l1: L1Config = L1Config()
    l2: L2Config = L2Config()
    l3: L3Config = L3Config()
    embedding: EmbeddingConfig = EmbeddingConfig()
    search: SearchConfig = SearchConfig()
    moves: MovesConfig = MovesConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    log: LogConfig = LogConfig()
    policy: str = "default"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))


class _FileSource(PydanticBaseSettingsSource):
    """The values of the config file being loaded (set by `load_config`)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_file_values.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_values.get() or {})


def read_file(path: str | Path) -> dict[str, Any]:
    """A TOML/YAML/JSON file as a dict (by extension); ConfigError if unreadable."""
    p = Path(path)
    try:
        text = p.read_text()
        if p.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{p}: unknown config format {p.suffix!r}; use .toml, .yaml or .json")
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: cannot read config: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config file must hold a table/mapping at the top")
    return data


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with another override")
        node[leaf] = value
    return out


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    config: Config | dict[str, Any] | str | Path | None, overrides: dict[str, Any] | None = None
) -> Config:
    """Build a Config from a Config, dict or file path, plus env and dotted overrides."""
    if isinstance(config, Config) and not overrides:
        return config
    if isinstance(config, Config):
        file_values = config.model_dump()
    elif isinstance(config, dict):
        file_values = config
    elif config is not None:
        file_values = read_file(config)
    else:
        file_values = {}
    init = _nest(overrides or {})
    token = _file_values.set(file_values)
    try:
        return Config(**init)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        where = f" (in {config})" if isinstance(config, str | Path) else ""
        raise ConfigError(f"config key {key!r}: {err['msg']}{where}") from None
    finally:
        _file_values.reset(token)


class StoreFormat(BaseModel):
    """What a data dir was created with; fixed for its lifetime."""

    model_config = ConfigDict(frozen=True)

    format_version: int = FORMAT_VERSION
    store_id: str
    dim: int
    metric: str
    l3_codec: str


def check_format(data_dir: Path, cfg: Config, *, create: bool) -> StoreFormat:
    """Read (or, if `create`, write) the data dir's format and compare it with `cfg`."""
    path = data_dir / "format.json"
    wanted = {"dim": cfg.embedding.dim, "metric": cfg.embedding.metric, "l3_codec": cfg.l3.codec}
    if not path.exists():
        if not create:
            raise ConfigError(f"{data_dir} is not a tiermem data dir (no format.json)")
        fmt = StoreFormat(store_id=new_id().replace("-", "")[-12:], **wanted)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(fmt.model_dump_json(indent=2))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return fmt
    try:
        fmt = StoreFormat.model_validate_json(path.read_text())
    except (OSError, PydanticValidationError) as exc:
        raise ConfigError(f"{path} is unreadable: {exc}") from exc
    for key, value in wanted.items():
        stored = getattr(fmt, key)
        if stored != value:
            raise ConfigError(
                f"{data_dir} was created with {key}={stored!r} but the config says {value!r}; "
                f"use a matching config (e.g. embedding.dim={stored}) or a new data dir"
            )
    return fmt
