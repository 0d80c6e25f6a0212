"""The lifecycle scheduler: job lock, period latch, and real worker processes.

Real Redis, real child processes, no mocks. Workers are blocking `Scheduler`s
whose job appends ``job:period:pid`` to a Redis list under the test prefix.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tiermem.errors import TierMemError
from tiermem.lifecycle.scheduler import (
    JobLock,
    JobLockTaken,
    Scheduler,
    claim_period,
    period_index,
)
from tiermem.tiers.keys import Keys

ROOT = Path(__file__).resolve().parent.parent

HOLDER = textwrap.dedent(
    """
    import sys, time, redis
    from tiermem.lifecycle.scheduler import JobLock
    from tiermem.tiers.keys import Keys
    url, prefix = sys.argv[1:3]
    lock = JobLock(redis.Redis.from_url(url), Keys(prefix), "demote", lease=1.5)
    assert lock.acquire()
    print("held", flush=True)
    time.sleep(60)
    """
)

WORKER = textwrap.dedent(
    """
    import logging, os, sys, time, redis
    from tiermem.lifecycle.scheduler import Scheduler, install_signal_handlers
    from tiermem.tiers.keys import Keys
    url, prefix, jobs = sys.argv[1:4]
    interval, work, lease = map(float, sys.argv[4:7])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    client = redis.Redis.from_url(url)

    def run_job(job):
        client.rpush(f"{prefix}:runs", f"{job}:{sched.period(job)}:{os.getpid()}")
        time.sleep(work)
        client.rpush(f"{prefix}:done", f"{job}:{os.getpid()}")
        return "ok"

    sched = Scheduler(run_job, {j: interval for j in jobs.split(",")}, client, Keys(prefix),
                      lease=lease, blocking=True)
    install_signal_handlers(sched)
    print("ready", flush=True)
    sched.start()
    client.rpush(f"{prefix}:exited", os.getpid())
    """
)


def spawn(code: str, *args: object) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line in ("held", "ready"), proc.stderr.read() if proc.stderr else line
    return proc


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def wait_for(pred: Callable[[], bool], timeout: float, step: float = 0.02) -> float:
    """Poll until pred() is true; the seconds it took (fails after ``timeout``)."""
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(step)
    return time.monotonic() - t0


def entries(client: redis.Redis, key: str) -> list[str]:
    return [v.decode() for v in client.lrange(key, 0, -1)]


def terminate(proc: subprocess.Popen[str]) -> str:
    """SIGTERM a worker; assert it exits cleanly; its stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return err


# --- JobLock -----------------------------------------------------------------


def test_job_lock_is_mutually_exclusive(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    a, b = JobLock(redis_client, keys, "demote"), JobLock(redis_client, keys, "demote")
    assert a.acquire()
    assert not b.acquire()
    assert JobLock(redis_client, keys, "expire").acquire()  # other jobs are independent
    with pytest.raises(JobLockTaken), b:
        pass
    assert a.release()
    assert not a.release()  # twice is a no-op
    with b:
        assert b.held and not a.acquire()
    assert not redis_client.exists(keys.job_lock("demote"))
    assert issubclass(JobLockTaken, TierMemError)


def test_heartbeat_keeps_the_lock_past_its_lease(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    lock = JobLock(redis_client, keys, "demote", lease=0.6)
    assert lock.acquire()
    time.sleep(1.5)  # 2.5 leases
    assert not JobLock(redis_client, keys, "demote").acquire()
    assert not lock.lost and redis_client.pttl(keys.job_lock("demote")) > 0
    lock.release()
    assert JobLock(redis_client, keys, "demote").acquire()


def test_heartbeat_notices_a_lost_lock(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    lock = JobLock(redis_client, keys, "demote", lease=0.6)
    assert lock.acquire()
    redis_client.set(keys.job_lock("demote"), "someone-else")  # e.g. expired and re-taken
    wait_for(lambda: lock.lost, timeout=2)
    assert not lock.release()  # never deletes another holder's lock
    assert redis_client.get(keys.job_lock("demote")) == b"someone-else"


def test_lock_of_a_killed_holder_expires_after_its_lease(
    redis_url: str, redis_client: redis.Redis, prefix: str, procs: list[subprocess.Popen[str]]
) -> None:
    keys = Keys(prefix)
    child = spawn(HOLDER, redis_url, prefix)
    procs.append(child)
    mine = JobLock(redis_client, keys, "demote", lease=1.5)
    assert not mine.acquire()
    time.sleep(1.0)  # the child's heartbeat has renewed past the first lease by now
    assert not mine.acquire()
    child.send_signal(signal.SIGKILL)
    child.wait(5)
    took = wait_for(mine.acquire, timeout=3)
    assert 0.2 < took < 1.5 + 0.5
    mine.release()


# --- period latch and run_once ---------------------------------------------------


def test_period_latch_is_claimed_once(redis_client: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    at = datetime(2025, 1, 1, 0, 0, 59, tzinfo=UTC)
    p = period_index(at, 60.0)
    assert p == period_index(at - timedelta(seconds=59), 60.0) != period_index(at, 1.0)
    assert [claim_period(redis_client, keys, "demote", p, 60.0) for _ in range(2)] == [True, False]
    assert claim_period(redis_client, keys, "demote", p + 1, 60.0)
    assert claim_period(redis_client, keys, "expire", p, 60.0)
    assert 60_000 < redis_client.pttl(keys.job_latch("demote", p)) <= 120_000


def test_run_once_follows_the_injected_clock(
    redis_client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    now = [datetime(2025, 1, 1, tzinfo=UTC)]
    ran: list[str] = []

    def run_job(job: str) -> dict[str, int]:
        if job == "expire":
            raise RuntimeError("boom")
        ran.append(job)
        assert sched.period(job) == period_index(now[0], 60.0)
        return {"moved": 3}

    sched = Scheduler(
        run_job,
        {"demote": 60, "expire": 60, "compact": 0, "checkpoint": None},
        redis_client,
        Keys(prefix),
        clock=lambda: now[0],
    )
    assert set(sched.intervals) == {"demote", "expire"}  # 0/None disable a job
    caplog.set_level(logging.DEBUG, logger="tiermem.lifecycle.scheduler")
    assert sched.run_once("demote")
    assert not sched.run_once("demote")  # same period
    now[0] += timedelta(seconds=59)
    assert not sched.run_once("demote")
    now[0] += timedelta(seconds=1)
    assert sched.run_once("demote")
    assert ran == ["demote", "demote"] and sched.period("demote") is None
    assert "job demote done in" in caplog.text and "{'moved': 3}" in caplog.text
    with pytest.raises(RuntimeError, match="boom"):
        sched.run_once("expire")
    assert "job expire failed" in caplog.text and "Traceback" in caplog.text
    assert not redis_client.exists(Keys(prefix).job_lock("expire"))  # released on failure
    with pytest.raises(ValueError):
        sched.run_once("compact")


def test_background_scheduler_survives_a_failing_job(
    redis_client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[float] = []

    def run_job(job: str) -> None:
        calls.append(time.monotonic())
        raise RuntimeError("boom")

    sched = Scheduler(run_job, {"demote": 1}, redis_client, Keys(prefix))
    sched.start()
    try:
        wait_for(lambda: len(calls) >= 2, timeout=3)  # first run soon, then the next period
    finally:
        sched.stop()
    assert not sched.running and caplog.text.count("job demote failed") >= 2
    assert not redis_client.exists(Keys(prefix).job_lock("demote"))


def test_stop_waits_for_the_running_job(redis_client: redis.Redis, prefix: str) -> None:
    started, done = threading.Event(), threading.Event()

    def run_job(job: str) -> None:
        started.set()
        time.sleep(0.5)
        done.set()

    sched = Scheduler(run_job, {"demote": 60}, redis_client, Keys(prefix))
    sched.start()
    assert started.wait(3)
    sched.stop(wait=True)
    assert done.is_set() and not redis_client.exists(Keys(prefix).job_lock("demote"))


# --- worker processes --------------------------------------------------------------


def test_two_workers_run_each_period_once(
    redis_url: str, redis_client: redis.Redis, prefix: str, procs: list[subprocess.Popen[str]]
) -> None:
    jobs = ("demote", "expire")
    for _ in range(2):
        procs.append(spawn(WORKER, redis_url, prefix, ",".join(jobs), 1.0, 0.2, 30))
    time.sleep(4.2)
    for proc in procs:
        terminate(proc)
    runs = [tuple(e.split(":")) for e in entries(redis_client, f"{prefix}:runs")]
    counts = Counter((job, int(period)) for job, period, _ in runs)
    assert counts and max(counts.values()) == 1, counts  # never twice in a period
    for job in jobs:
        periods = sorted(p for j, p in counts if j == job)
        # every period from the first to the last ran (4 s: at least 4 periods)
        assert periods == list(range(periods[0], periods[-1] + 1)) and len(periods) >= 4
    assert len(entries(redis_client, f"{prefix}:done")) == len(runs)  # every run finished
    assert sorted(map(int, entries(redis_client, f"{prefix}:exited"))) == sorted(
        p.pid for p in procs
    )
    assert not any(redis_client.exists(Keys(prefix).job_lock(j)) for j in jobs)


def test_worker_takes_over_from_a_killed_holder_and_exits_on_sigterm(
    redis_url: str, redis_client: redis.Redis, prefix: str, procs: list[subprocess.Popen[str]]
) -> None:
    lease, interval, work = 1.5, 1.0, 3.0
    for _ in range(2):
        procs.append(spawn(WORKER, redis_url, prefix, "demote", interval, work, lease))
    lock_key = Keys(prefix).job_lock("demote")
    wait_for(lambda: redis_client.llen(f"{prefix}:runs") >= 1, timeout=4)
    holder_pid = int(redis_client.get(lock_key).decode().split(":")[1])  # token: host:pid:uuid
    (holder,) = [p for p in procs if p.pid == holder_pid]
    (other,) = [p for p in procs if p is not holder]
    holder.send_signal(signal.SIGKILL)
    holder.wait(5)
    took = wait_for(lambda: redis_client.llen(f"{prefix}:runs") >= 2, timeout=lease + interval + 2)
    assert took < lease + interval + 0.5
    runs = entries(redis_client, f"{prefix}:runs")
    assert runs[0].endswith(f":{holder_pid}") and runs[1].endswith(f":{other.pid}")
    assert entries(redis_client, f"{prefix}:done") == []  # the killed run never finished

    # SIGTERM mid-run: the running job finishes, the lock is released, exit 0.
    time.sleep(0.3)
    terminate(other)
    assert entries(redis_client, f"{prefix}:done") == [f"demote:{other.pid}"]
    assert entries(redis_client, f"{prefix}:exited") == [str(other.pid)]
    assert not redis_client.exists(lock_key)


def test_sigterm_right_at_startup_exits_cleanly(
    redis_url: str, redis_client: redis.Redis, prefix: str, procs: list[subprocess.Popen[str]]
) -> None:
    worker = spawn(WORKER, redis_url, prefix, "demote", 1.0, 0.2, 30)
    procs.append(worker)
    terminate(worker)  # signalled as start() begins: no hang, exit 0
    assert entries(redis_client, f"{prefix}:exited") == [str(worker.pid)]
    assert not redis_client.exists(Keys(prefix).job_lock("demote"))
