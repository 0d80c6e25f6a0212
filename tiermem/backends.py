"""Opening the three tiers of a data dir from its config.

Layout of a data dir::

    format.json   what the store was created with (config.StoreFormat)
    LOCK          the writer lock
    redis/        the embedded Redis (AOF, socket, pid) when l1.url is unset
    l2/           warm tier: Arrow IPC segments, tombstones, usearch checkpoints
    l3/           cold tier: Parquet files, delete files, manifest.json
    moves/        journal of in-flight moves
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from tiermem.config import Config, StoreFormat
from tiermem.errors import TierUnavailable
from tiermem.model import TierName
from tiermem.tiers.base import Tier
from tiermem.tiers.cold import ColdTier
from tiermem.tiers.embedded import EmbeddedRedis, connect_url
from tiermem.tiers.hot import HotTier
from tiermem.tiers.keys import Keys
from tiermem.tiers.warm import WarmTier


@dataclass
class Backends:
    """The opened tiers, and the embedded Redis this process owns (if any)."""

    l1: HotTier
    l2: WarmTier
    l3: ColdTier
    embedded: EmbeddedRedis | None
    url: str

    @property
    def tiers(self) -> dict[TierName, Tier]:
        return {"l1": self.l1, "l2": self.l2, "l3": self.l3}

    def close(self) -> None:
        for tier in (self.l2, self.l3, self.l1):
            tier.close()
        if self.embedded is not None:
            self.embedded.stop()


def _redis_url(path: Path, cfg: Config, read_only: bool) -> tuple[str, EmbeddedRedis | None]:
    if cfg.l1.url:
        return cfg.l1.url, None
    root = path / "redis"
    if read_only:
        url = connect_url(root)
        if url is None:
            raise TierUnavailable(
                f"no writer is running the embedded Redis of {path}; open it for writing "
                "first (or set l1.url to a Redis server)"
            )
        return url, None
    embedded = EmbeddedRedis(root)
    return embedded.start(), embedded


def connect(url: str, cfg: Config) -> redis.Redis:
    """A client for `url`, checked with PING; TierUnavailable if it does not answer."""
    try:
        # redis-py 8 retries with backoff for ~20 s by default; fail fast instead
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2)
        client = redis.Redis.from_url(url, socket_timeout=cfg.l1.socket_timeout, retry=retry)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise TierUnavailable(
            f"L1 Redis at {url} is unreachable ({exc}). Start Redis there, fix l1.url "
            "(or TIERMEM_L1__URL), or leave l1.url unset to use the embedded Redis."
        ) from exc
    return client


def open_backends(path: Path, cfg: Config, fmt: StoreFormat, read_only: bool) -> Backends:
    """Open L1 (connecting or starting Redis), L2 and L3 for the data dir `path`."""
    url, embedded = _redis_url(path, cfg, read_only)
    try:
        client = connect(url, cfg)
        dim = fmt.dim
        keys = Keys(cfg.l1.prefix or f"tm:{fmt.store_id}")
        l1 = HotTier(client, keys, dim, url, cache=cfg.l1.cache)
        l2 = WarmTier(
            path / "l2",
            dim,
            exact_threshold=cfg.l2.exact_threshold,
            connectivity=cfg.l2.connectivity,
            expansion_add=cfg.l2.expansion_add,
            expansion_search=cfg.l2.expansion_search,
            dtype=cfg.l2.dtype,
            read_only=read_only,
        )
        l3 = ColdTier(
            path / "l3",
            dim,
            zstd_level=cfg.l3.zstd_level,
            row_group_size=cfg.l3.row_group_size,
            vector_precision=cfg.l3.vector_precision,
            read_only=read_only,
        )
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    return Backends(l1=l1, l2=l2, l3=l3, embedded=embedded, url=url)
