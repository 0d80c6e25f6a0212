"""The writer lock: one writing process per data dir.

An exclusive, non-blocking ``flock`` on ``<data dir>/LOCK``. The kernel drops
it when the process dies, so a crashed writer never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tiermem.errors import LockedError


class WriterLock:
    """Hold the data dir's writer lock until `release()`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "LOCK"
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise LockedError(
                f"{data_dir} is open for writing in another process; close it there, "
                "or open with read_only=True"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
