"""Policy hot reload without a signal: the file watch, and rescheduling of the job
intervals a policy sets. (The worker process end to end is in test_cli.py.)"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.conftest import OpenStore
from tiermem.lifecycle.policy import Policy
from tiermem.lifecycle.scheduler import Scheduler
from tiermem.lifecycle.watch import PolicyWatcher, policy_file
from tiermem.tiers.keys import Keys

GOOD = "version: 1\nkinds:\n  episodic:\n    l1: {capacity: %d}\n"
BAD = "version: 1\nkinds:\n  episodic:\n    l1: {idle: %s}\n"


def wait_for(pred: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def rejections(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "reload rejected" in r.getMessage()]


def test_policy_file_names_paths_not_shipped_policies(tmp_path: Path) -> None:
    assert policy_file("default") is None
    assert policy_file(tmp_path / "p.yaml") == (tmp_path / "p.yaml").resolve()


def test_watcher_applies_good_edits_and_logs_each_bad_content_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "live.yaml"
    path.write_text(GOOD % 10)
    applied: list[Policy] = []
    watcher = PolicyWatcher(path, applied.append)
    assert watcher.poll() is False  # the file as found is the policy in force
    path.write_text(GOOD % 20)
    assert watcher.poll() is True
    assert applied[-1].for_kind("episodic").l1.capacity == 20
    caplog.set_level(logging.ERROR, "tiermem.policy")
    path.write_text(BAD % "soon")
    assert watcher.poll() is False
    os.utime(path, ns=(1, 1))  # touched, same bad content: not logged again
    assert [watcher.poll(), watcher.poll()] == [False, False]
    assert len(rejections(caplog)) == 1 and "kinds.episodic.l1.idle" in rejections(caplog)[0]
    path.write_text(BAD % "later")  # a different mistake is news
    assert watcher.poll() is False
    assert len(rejections(caplog)) == 2
    assert watcher.reload() is False  # an explicit reload (SIGHUP) always says why
    assert len(rejections(caplog)) == 3
    path.unlink()
    assert watcher.poll() is False
    assert len(rejections(caplog)) == 4 and "not readable" in rejections(caplog)[-1]
    path.write_text(GOOD % 30)
    assert watcher.poll() is True
    assert [p.for_kind("episodic").l1.capacity for p in applied] == [20, 30]


def test_watcher_sees_an_edit_that_keeps_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "live.yaml"
    path.write_text(GOOD % 10)
    stat = path.stat()
    applied: list[Policy] = []
    watcher = PolicyWatcher(path, applied.append)
    path.write_text(GOOD % 20)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert watcher.poll() is True and applied[0].for_kind("episodic").l1.capacity == 20


def test_reschedule_applies_new_intervals_to_a_running_scheduler(
    redis_client: redis.Redis, prefix: str
) -> None:
    runs: list[str] = []
    sched = Scheduler(runs.append, {"demote": 3600, "promote": 0}, redis_client, Keys(prefix))
    sched.start()
    try:
        wait_for(lambda: runs.count("demote") == 1)  # the first run comes soon after start
        changed = sched.reschedule({"demote": 0.3, "promote": 0.3})
        assert changed == {"demote": 0.3, "promote": 0.3}
        wait_for(lambda: runs.count("demote") >= 3 and runs.count("promote") >= 2)
        assert sched.reschedule({"demote": 0.3, "promote": 0}) == {"promote": 0.0}
        time.sleep(0.35)  # a firing already under way may still finish
        before = runs.count("promote")
        time.sleep(1.0)
        assert runs.count("promote") == before  # disabled
        assert sched.reschedule({"demote": 0.3}) == {}
    finally:
        sched.stop()


def test_every_runs_a_local_task_and_survives_its_errors(
    redis_client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def task() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    sched = Scheduler(lambda job: None, {}, redis_client, Keys(prefix))
    sched.every("watch", 0.1, task)
    sched.start()
    try:
        wait_for(lambda: len(calls) >= 3)
    finally:
        sched.stop()
    assert any("watch failed" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError):
        sched.every("late", 1, task)


def test_engine_scheduler_applies_an_edited_policy_file(
    open_store: OpenStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "live.yaml"
    path.write_text("version: 1\nkinds:\n  episodic:\n    consolidate: {every: 1h}\n")
    mem = open_store(policy=str(path), overrides={"scheduler.policy_watch": 0.1})
    assert mem.job_intervals()["consolidate"] == 3600
    mem.start_scheduler()
    sched = mem._scheduler
    assert sched is not None and sched.intervals["consolidate"] == 3600
    caplog.set_level(logging.INFO)
    path.write_text("version: 1\nkinds:\n  episodic:\n    consolidate: {every: never}\n")
    wait_for(lambda: len(rejections(caplog)) == 1)
    time.sleep(0.5)  # several more polls of the same bad file
    assert len(rejections(caplog)) == 1
    assert mem.policy.for_kind("episodic").consolidate is not None
    assert mem.policy.for_kind("episodic").consolidate.every.total_seconds() == 3600
    path.write_text("version: 1\nkinds:\n  episodic:\n    consolidate: {every: 1s}\n")
    wait_for(lambda: sched.intervals.get("consolidate") == 1.0)  # no reload call, no signal
    assert mem.policy.for_kind("episodic").consolidate.every.total_seconds() == 1  # type: ignore[union-attr]
    before = mem.stats().jobs.get("consolidate", 0)
    wait_for(lambda: mem.stats().jobs.get("consolidate", 0) >= before + 2)  # now every second
    assert any("job consolidate: rescheduled" in r.getMessage() for r in caplog.records)


def test_an_edit_between_open_and_scheduler_start_is_applied(
    open_store: OpenStore, tmp_path: Path
) -> None:
    """The watcher's baseline is the file as the engine loaded it, not as it is
    when the scheduler starts: an edit in between must not be taken as seen."""
    path = tmp_path / "early.yaml"
    path.write_text("version: 1\nkinds:\n  episodic:\n    consolidate: {every: 1h}\n")
    mem = open_store(policy=str(path), overrides={"scheduler.policy_watch": 0.1})
    path.write_text("version: 1\nkinds:\n  episodic:\n    consolidate: {every: 2h}\n")
    mem.start_scheduler()
    wait_for(lambda: mem.job_intervals()["consolidate"] == 7200)


def test_shipped_policies_are_not_polled(open_store: OpenStore) -> None:
    mem = open_store(overrides={"scheduler.policy_watch": 0.1})
    sched = mem.scheduler()
    assert sched._local == {} and sched.reload is not None  # SIGHUP still re-reads it
