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

`Scheduler.reschedule` applies new intervals to a running scheduler (the
engine calls it when a policy reload changes one, e.g. ``consolidate.every``);
`Scheduler.every` adds per-process tasks with no latch or lock (the policy
file watch: every worker must notice an edit, not just one).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import FrameType
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

from tiermem.errors import TierUnavailable
from tiermem.ids import Clock, utcnow
from tiermem.lifecycle.joblock import JobLock, JobLockTaken, claim_period, period_index
from tiermem.tiers.keys import Keys

__all__ = [
    "JobLock",
    "JobLockTaken",
    "Scheduler",
    "claim_period",
    "install_signal_handlers",
    "period_index",
]

log = logging.getLogger(__name__)


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


def _enabled(intervals: Mapping[str, float | None]) -> dict[str, float]:
    """The enabled jobs' intervals as floats; ValueError on a negative one."""
    out = {job: float(s) for job, s in intervals.items() if s}
    if any(s < 0 for s in out.values()):
        raise ValueError(f"job intervals must be >= 0 seconds: {dict(intervals)}")
    return out


def _aligned(secs: float, now: datetime) -> _AlignedInterval:
    """Every ``secs`` on the period grid, each run a little (10%, at most 1 s) after a
    boundary, so small clock differences between hosts do not straddle periods."""
    anchor = math.floor(now.timestamp() / secs) * secs + min(0.1 * secs, 1.0)
    return _AlignedInterval(seconds=secs, start_date=datetime.fromtimestamp(anchor, UTC))


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
        self.intervals = _enabled(intervals)
        self._local: dict[str, tuple[float, Callable[[], Any]]] = {}
        # What a reload request (SIGHUP, see install_signal_handlers) runs; the
        # engine sets it to re-read the policy.
        self.reload: Callable[[], Any] | None = None
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
        self._resched_lock = threading.Lock()

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
        if self._stopping or job not in self.intervals:  # disabled by a reschedule meanwhile
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

    def _add_job(
        self, aps: BackgroundScheduler | BlockingScheduler, job: str, secs: float, now: datetime
    ) -> None:
        aps.add_job(
            self._fire,
            trigger=_aligned(secs, now),
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

    def every(self, name: str, seconds: float, fn: Callable[[], Any]) -> None:
        """Also call ``fn()`` every ``seconds`` in this process, with no latch or lock
        (housekeeping every worker does, such as watching the policy file). Call
        before `start()`; ``fn``'s exceptions are logged, never raised."""
        if seconds <= 0:
            raise ValueError(f"{name}: seconds must be > 0, got {seconds}")
        if self._aps is not None:
            raise RuntimeError("add tasks with every() before start()")
        self._local[name] = (float(seconds), fn)

    def _fire_local(self, name: str, fn: Callable[[], Any]) -> None:
        if self._stopping:
            return
        try:
            fn()
        except Exception:
            self.log.exception("%s failed; tried again in %.3gs", name, self._local[name][0])

    def reschedule(self, intervals: Mapping[str, float | None]) -> dict[str, float]:
        """Replace the job intervals (as given to the constructor); returns the jobs
        whose interval changed -> new seconds (0: now disabled).

        On a running scheduler a changed job moves to its new period grid (its
        next run at the next boundary), a newly enabled one starts soon, a
        disabled one is removed; a run in progress finishes under its old period.
        """
        new = _enabled(intervals)
        # Not _stop_lock: a shutdown holding it waits for running tasks, and this may be one.
        with self._resched_lock:
            old, self.intervals = self.intervals, new
            changed = {
                j: new.get(j, 0.0) for j in old.keys() | new.keys() if old.get(j) != new.get(j)
            }
            aps, now = self._aps, datetime.now(UTC)
            if aps is None or self._stopping:  # not started: start() reads self.intervals
                return changed
            for job, secs in sorted(changed.items()):
                if not secs:
                    aps.remove_job(job)
                elif job not in old:
                    self._add_job(aps, job, secs, now)
                else:
                    trigger = _aligned(secs, now)
                    aps.modify_job(
                        job,
                        trigger=trigger,
                        next_run_time=trigger.get_next_fire_time(None, now),
                        misfire_grace_time=max(1, int(secs / 2)),
                    )
                self.log.info("job %s: rescheduled, every %gs (0: off)", job, secs)
        return changed

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
        with self._resched_lock:  # a reschedule (SIGHUP) meanwhile sees all jobs or none
            for job, secs in self.intervals.items():
                self._add_job(aps, job, secs, now)
            for name, (secs, fn) in self._local.items():
                aps.add_job(
                    self._fire_local,
                    trigger=IntervalTrigger(seconds=secs, start_date=now + timedelta(seconds=secs)),
                    args=(name, fn),
                    id=f"local:{name}",
                    name=f"tiermem:{name}",
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=max(1, int(secs)),
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
    handler (e.g. Ctrl-C twice forces exit). If ``scheduler.reload`` is set, SIGHUP
    runs it on a thread of its own. Call from the main thread.
    """
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
        scheduler.log.info("signal %d: stopping after the running jobs", signum)
        scheduler.stop(wait=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handle)
    reload = scheduler.reload
    if reload is not None:
        # Handlers run on the thread blocked in APScheduler's loop; a reload takes the
        # engine's lock and reschedules jobs, so it must not run inside that loop.
        signal.signal(
            signal.SIGHUP,
            lambda signum, frame: threading.Thread(target=reload, name="tiermem-reload").start(),
        )
