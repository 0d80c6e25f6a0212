"""Run lifecycle jobs on intervals, at most once at a time across processes.

APScheduler 3.x fires each enabled job every ``interval`` seconds. A firing
runs the job only if it can take, in order:

1. the **period latch** ``Keys.job_latch(job, period)`` (SET NX, TTL ~2
   periods), with ``period = floor(clock() / interval)``: whoever claims it
   first owns that period, so with N workers the job runs once per period
   even when the lock is free between their firings;
2. the **job lock** ``Keys.job_lock(job)`` (`JobLock`): a lease that a
   heartbeat thread renews while the job runs, so a slow run never overlaps
   another and a crashed holder frees it after one lease.

Jobs are idempotent, so a period skipped (latch claimed by a run that then
found the lock busy, a misfire, a crash) is simply caught up by the next one.
Redis leases are real time; the period index and logged durations read the
injected clock; APScheduler itself runs on wall time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import FrameType, TracebackType
from typing import Any

import redis
from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    JobEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from tiermem.errors import LockedError, TierUnavailable
from tiermem.ids import Clock, utcnow
from tiermem.tiers.keys import Keys

log = logging.getLogger(__name__)

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


class _AlignedInterval(IntervalTrigger):  # type: ignore[misc]
    """An interval trigger whose runs after the first stay on ``start_date + k*interval``.

    The stock trigger schedules ``previous + interval``, so an off-grid first
    run (``next_run_time``) would shift every later run off the period grid.
    """

    def get_next_fire_time(self, previous: datetime | None, now: datetime) -> datetime | None:
        if previous is not None:
            now = max(now, previous + timedelta(microseconds=1))
        result: datetime | None = super().get_next_fire_time(None, now)
        return result


class Scheduler:
    """Lifecycle jobs on intervals: ``run_job(name)`` at most once per period across workers.

    ``intervals`` maps job name -> seconds (0/None disables the job). With
    ``blocking=True``, `start()` runs a foreground worker until `stop()`.
    Single use: after `stop()` (even one before `start()`), `start()` returns at once.
    """

    def __init__(
        self,
        run_job: Callable[[str], Any],
        intervals: Mapping[str, float | None],
        client: redis.Redis,
        keys: Keys,
        *,
        clock: Clock = utcnow,
        lease: float = 30.0,
        blocking: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        self.intervals = {job: float(s) for job, s in intervals.items() if s}
        if any(s < 0 for s in self.intervals.values()):
            raise ValueError(f"job intervals must be >= 0 seconds: {dict(intervals)}")
        self._run_job = run_job
        self._client = client
        self._keys = keys
        self._clock = clock
        self.lease = lease
        self.blocking = blocking
        self.log = logger or log
        self._aps: BackgroundScheduler | BlockingScheduler | None = None
        self._running: dict[str, tuple[int, JobLock]] = {}
        self._stopping = False
        self._started = threading.Event()  # APScheduler is running, or start() gave up
        self._stopped = threading.Event()  # stop() finished: jobs drained, locks released
        self._start_thread: int | None = None
        self._stop_lock = threading.RLock()

    @property
    def running(self) -> bool:
        return self._aps is not None and self._aps.state != STATE_STOPPED

    def period(self, job: str) -> int | None:
        """The period ``job`` is running for in this process, or None if it is not running."""
        running = self._running.get(job)
        return running[0] if running else None

    def lost(self, job: str) -> bool:
        """True if ``job`` is running here and its lock was lost (so it should stop early)."""
        running = self._running.get(job)
        return running is not None and running[1].lost

    def run_once(self, job: str) -> bool:
        """Run ``job`` now if this period is unclaimed and the lock is free; True if it ran.

        A job's own exception is logged (ERROR, with traceback) and re-raised.
        """
        claim = self._claim(job)
        return claim is not None and self._execute(job, *claim)

    def _claim(self, job: str) -> tuple[int, JobLock] | None:
        """Take the period latch, then the job lock; None (logged at DEBUG) if either is taken."""
        interval = self.intervals.get(job)
        if interval is None:
            raise ValueError(f"unknown or disabled lifecycle job {job!r}")
        lock = JobLock(self._client, self._keys, job, lease=self.lease)
        try:
            period = period_index(self._clock(), interval)
            if not claim_period(self._client, self._keys, job, period, interval):
                self.log.debug("job %s: period %d already claimed; skipped", job, period)
                return None
            if not lock.acquire():
                self.log.debug("job %s: running elsewhere; period %d skipped", job, period)
                return None
        except redis.RedisError as exc:
            raise TierUnavailable(f"scheduler: Redis failed claiming job {job}: {exc}") from exc
        return period, lock

    def _execute(self, job: str, period: int, lock: JobLock) -> bool:
        self._running[job] = (period, lock)
        started = self._clock()
        try:
            result = self._run_job(job)
        except Exception:
            secs = (self._clock() - started).total_seconds()
            self.log.exception("job %s failed after %.3fs (period %d)", job, secs, period)
            raise
        finally:
            self._running.pop(job, None)
            lock.release()
        secs = (self._clock() - started).total_seconds()
        if lock.lost:
            self.log.warning("job %s: lock was lost during the run", job)
        self.log.info("job %s done in %.3fs (period %d): %.200r", job, secs, period, result)
        return True

    def _fire(self, job: str) -> None:
        """The APScheduler callback: never raises, so the scheduler stays alive."""
        if self._stopping:
            return
        try:
            claim = self._claim(job)
        except TierUnavailable:
            self.log.exception("job %s: could not claim it; retried next period", job)
            return
        if claim is not None:
            with contextlib.suppress(Exception):  # logged with its traceback by _execute
                self._execute(job, *claim)

    def _on_event(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            self.log.info(
                "job %s: run missed its grace time; the next period catches up", event.job_id
            )
        else:
            self.log.debug("job %s: still running here; this firing skipped", event.job_id)

    def start(self) -> None:
        """Schedule every enabled job and start; with ``blocking=True``, return after `stop()`."""
        if self._aps is not None:
            raise RuntimeError("a Scheduler starts once; make a new one")
        aps = (
            BlockingScheduler(timezone=UTC) if self.blocking else BackgroundScheduler(timezone=UTC)
        )
        aps.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        aps.add_listener(lambda _: self._started.set(), EVENT_SCHEDULER_STARTED)
        now = datetime.now(UTC)
        for job, secs in self.intervals.items():
            # Later runs land a little (10%, at most 1 s) after each period boundary,
            # so small clock differences between hosts do not straddle periods.
            anchor = math.floor(now.timestamp() / secs) * secs + min(0.1 * secs, 1.0)
            aps.add_job(
                self._fire,
                trigger=_AlignedInterval(
                    seconds=secs, start_date=datetime.fromtimestamp(anchor, UTC)
                ),
                args=(job,),
                id=job,
                name=f"tiermem:{job}",
                # Missed runs (process suspended, clock jump) collapse into one run.
                coalesce=True,
                # A run still going when the next is due makes that firing skip: never overlap.
                max_instances=1,
                # A firing later than half an interval is dropped (EVENT_JOB_MISSED) rather
                # than run late: it would then land in, and claim, the next period, and the
                # next on-time firing picks the work up anyway. APScheduler 3 wants whole
                # seconds, so short intervals get 1 s.
                misfire_grace_time=max(1, int(secs / 2)),
                # First run soon after start; jitter spreads workers started together.
                next_run_time=now + timedelta(seconds=random.uniform(0.05, min(1.0, secs / 10))),
            )
        self._aps = aps
        self._start_thread = threading.get_ident()
        if self._stopping:  # stopped (by a signal?) before we got going
            self._started.set()
            return
        try:
            aps.start()  # blocks in the foreground for BlockingScheduler
        finally:
            self._started.set()
        if self.blocking:
            self._stopped.wait()  # stop() is done: running jobs finished, locks released
            self._start_thread = None

    def stop(self, wait: bool = True) -> None:
        """Stop firing; with ``wait``, let running jobs finish (their locks are released).

        Safe from a signal handler: called on the thread blocked in a blocking
        `start()` (which is where Python runs handlers), it hands the shutdown
        to a new thread (APScheduler's ``shutdown(wait)`` from another thread)
        and returns at once; `start()` returns once that shutdown is complete.
        Idempotent.
        """
        self._stopping = True
        if self.blocking and threading.get_ident() == self._start_thread:
            threading.Thread(target=self._shutdown, args=(wait,), name="tiermem-stop").start()
            return
        self._shutdown(wait)

    def _shutdown(self, wait: bool) -> None:
        if self.blocking and self._start_thread is not None:
            self._started.wait()  # a blocking start() may still be entering APScheduler
        with self._stop_lock:
            aps = self._aps
            if aps is not None and aps.state != STATE_STOPPED:
                aps.pause()  # no new firings while running jobs drain
                aps.shutdown(wait=wait)
            self._stopped.set()


def install_signal_handlers(scheduler: Scheduler) -> None:
    """SIGINT/SIGTERM -> `scheduler.stop()`: the running job finishes, its lock is
    released, and a blocking `start()` returns. A second signal gets the previous
    handler (e.g. Ctrl-C twice forces exit). Call from the main thread.
    """
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
        scheduler.log.info("signal %d: stopping after the running jobs", signum)
        scheduler.stop(wait=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handle)
