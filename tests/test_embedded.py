"""The embedded Redis: lifecycle, AOF durability, orphans, stale pidfiles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tiermem.tiers.embedded import (
    SOCKET_MAX,
    EmbeddedRedis,
    _alive,
    connect_url,
    redis_binary,
)

CHILD = """
import sys, time, redis
from pathlib import Path
from tiermem.tiers.embedded import EmbeddedRedis
url = EmbeddedRedis(Path(sys.argv[1])).start()
redis.Redis.from_url(url).set("k", "survives")
print("ready", flush=True)
time.sleep(60)
"""


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_pid(root: Path) -> int:
    return int((root / "redis.pid").read_text())


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "redis"
    yield path
    # never leave a server behind, whatever the test did
    if (path / "redis.pid").exists():
        pid = read_pid(path)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_start_stop_leaves_nothing_running(root: Path) -> None:
    e = EmbeddedRedis(root)
    url = e.start()
    assert url == f"unix://{root / 'redis.sock'}"
    assert connect_url(root) == url
    pid = read_pid(root)
    assert redis.Redis.from_url(url).ping()
    e.stop()
    assert not _alive(pid)
    assert not (root / "redis.sock").exists() and not (root / "redis.pid").exists()
    assert connect_url(root) is None
    e.stop()  # idempotent


def test_data_survives_restart_via_aof(root: Path) -> None:
    with EmbeddedRedis(root) as e:
        redis.Redis.from_url(e.url).set("k", "v")
    assert "appendonly yes" in (root / "redis.conf").read_text()
    with EmbeddedRedis(root) as e:
        assert redis.Redis.from_url(e.url).get("k") == b"v"


def test_killed_parent_leaves_no_orphan_and_keeps_data(root: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    server = read_pid(root)
    child.send_signal(signal.SIGKILL)
    child.wait()
    # PDEATHSIG (Linux) stops it; elsewhere the next start() must
    died = wait_dead(server, 5.0)
    if sys.platform.startswith("linux"):
        assert died, "PDEATHSIG did not stop the server"
    e = EmbeddedRedis(root)
    url = e.start()
    assert not _alive(server)
    assert redis.Redis.from_url(url).get("k") == b"survives"
    new = read_pid(root)
    e.stop()
    assert not _alive(new)


def test_start_shuts_down_an_orphaned_server(root: Path) -> None:
    e = EmbeddedRedis(root)
    e.start()
    redis.Redis.from_url(e.url).set("k", "v")
    e.stop()
    # a server for this root that no live writer owns (as if PDEATHSIG never came)
    orphan = subprocess.Popen(
        [redis_binary(), str(root / "redis.conf")], start_new_session=True, cwd=root
    )
    try:
        deadline = time.monotonic() + 5
        while connect_url(root) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert read_pid(root) == orphan.pid
        url = e.start()
        assert orphan.wait(5) == 0  # clean SHUTDOWN
        assert read_pid(root) != orphan.pid
        assert redis.Redis.from_url(url).get("k") == b"v"
    finally:
        e.stop()
        if orphan.poll() is None:
            orphan.kill()


def test_stale_pidfile_is_replaced(root: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    root.mkdir(parents=True)
    (root / "redis.pid").write_text(f"{dead.pid}\n")
    e = EmbeddedRedis(root)
    e.start()
    try:
        assert read_pid(root) not in (dead.pid,) and _alive(read_pid(root))
    finally:
        e.stop()


def test_long_root_uses_short_socket_dir(tmp_path: Path) -> None:
    root = tmp_path / ("d" * 60) / ("e" * 60) / "redis"
    assert len(os.fsencode(root / "redis.sock")) > SOCKET_MAX
    e = EmbeddedRedis(root)
    url = e.start()
    try:
        sock = Path(url.removeprefix("unix://"))
        assert len(os.fsencode(sock)) <= SOCKET_MAX and sock.exists()
        assert connect_url(root) == url
        assert (root / "redis.sockpath").read_text().strip() == str(sock)
    finally:
        e.stop()
    assert not sock.exists() and not sock.parent.exists()
    assert connect_url(root) is None
