"""The cross-process parts of scheduling: a job's period latch and its lock.

``claim_period`` takes ``Keys.job_latch(job, period)`` (SET NX, TTL ~2
periods) so a period's run happens once across workers; `JobLock` is a
Redis lease on the job, renewed by a heartbeat thread while it runs.
`tiermem.lifecycle.scheduler` combines the two.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from datetime import datetime
from types import TracebackType

import redis

from tiermem.errors import LockedError
from tiermem.tiers.keys import Keys

log = logging.getLogger("tiermem.lifecycle.scheduler")  # one logger for all scheduling


# Renew / release only while the key still holds our token (never someone else's lease).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class JobLockTaken(LockedError):
    """`JobLock` used as a context manager while another process holds the job."""


def period_index(now: datetime, interval: float) -> int:
    """The job period ``now`` falls in: ``floor(epoch seconds / interval)``."""
    return math.floor(now.timestamp() / interval)


def claim_period(client: redis.Redis, keys: Keys, job: str, period: int, interval: float) -> bool:
    """Claim ``job``'s ``period`` once across all workers; True for the first claimer only."""
    ttl_ms = max(1000, math.ceil(2 * interval * 1000))
    return bool(
        client.set(
            keys.job_latch(job, period), f"{socket.gethostname()}:{os.getpid()}", nx=True, px=ttl_ms
        )
    )


class JobLock:
    """A Redis lease on one job name, renewed by a heartbeat thread while held.

    ``acquire()`` is SET NX PX; every ``lease/3`` s the heartbeat PEXPIREs the
    key if it still holds our token. If a renewal finds the key gone or
    someone else's (or Redis stays unreachable for a whole lease), `lost`
    turns True: a long job should check it and stop early. ``with lock:``
    raises `JobLockTaken` if the lock is held elsewhere.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        job: str,
        *,
        lease: float = 30.0,
        heartbeat: float | None = None,
    ) -> None:
        if lease <= 0:
            raise ValueError("lease must be > 0 seconds")
        self.job = job
        self.key = keys.job_lock(job)
        self.lease = lease
        self.heartbeat = heartbeat if heartbeat is not None else lease / 3
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._client = client
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held = False
        self._lost = False

    @property
    def lease_ms(self) -> int:
        return max(1, round(self.lease * 1000))

    @property
    def held(self) -> bool:
        """True between a successful `acquire()` and `release()` (even if since lost)."""
        return self._held

    @property
    def lost(self) -> bool:
        """True once a heartbeat failed to renew: another process may hold the job now."""
        return self._lost

    def acquire(self) -> bool:
        """Take the lock without waiting; True if we now hold it."""
        if self._held:
            return not self._lost
        if not self._client.set(self.key, self.token, nx=True, px=self.lease_ms):
            return False
        self._held, self._lost = True, False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(self._stop,), name=f"tiermem-lock-{self.job}", daemon=True
        )
        self._thread.start()
        return True

    def _beat(self, stop: threading.Event) -> None:
        last_ok = time.monotonic()
        while not stop.wait(self.heartbeat):
            try:
                renewed = self._renew(keys=[self.key], args=[self.token, self.lease_ms])
            except redis.RedisError as exc:
                if time.monotonic() - last_ok < self.lease:
                    log.warning("job %s: lock heartbeat failed, retrying: %s", self.job, exc)
                    continue
                renewed = 0
            if not renewed:
                self._lost = True
                log.warning("job %s: lock lost (lease expired or taken over)", self.job)
                return
            last_ok = time.monotonic()

    def release(self) -> bool:
        """Stop the heartbeat and delete the key if it is still ours; True if deleted.

        Never raises on Redis errors (the lease then simply expires).
        """
        if not self._held:
            return False
        self._held = False
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        try:
            return bool(self._release(keys=[self.key], args=[self.token]))
        except redis.RedisError as exc:
            log.warning(
                "job %s: lock release failed (expires in <= %.1fs): %s", self.job, self.lease, exc
            )
            return False

    def __enter__(self) -> JobLock:
        if not self.acquire():
            raise JobLockTaken(f"lifecycle job {self.job!r} is running in another process")
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
