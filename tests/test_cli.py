"""The `tiermem` command line, run as a real subprocess: output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DIM, Cli


@pytest.fixture
def cli(tmp_path: Path, redis_url: str, prefix: str) -> Cli:
    return Cli(tmp_path / "store", redis_url, prefix)


class Worker:
    """A `tiermem worker` subprocess whose output is collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tiermem.cli", "worker", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        """Block until a line containing `text` was printed (signal handlers are set by then)."""
        import time

        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.lines)):
            assert time.monotonic() < deadline, "".join(self.lines)
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)

    def stop(self) -> str:
        import signal

        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        return "".join(self.lines)


def test_add_get_search_stats_sql_forget(cli) -> None:  # type: ignore[no-untyped-def]
    id_ = cli(
        "add", "Alice drinks green tea", "--ns", "user:alice", "--meta", "src=chat", "--meta", "n=3"
    ).stdout.strip()
    got = json.loads(cli("get", id_).stdout)
    assert got["text"] == "Alice drinks green tea" and got["metadata"] == {"src": "chat", "n": 3}
    hits = json.loads(cli("search", "green tea", "--ns", "user:alice", "--json").stdout)
    assert hits[0]["memory"]["id"] == id_ and hits[0]["tier"] == "l1"
    assert "Alice drinks green tea" in cli("search", "tea", "--ns", "user:alice").stdout
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats["tiers"]["l1"]["count"] == 1
    assert "l1" in cli("stats").stdout
    out = cli(
        "sql", "SELECT namespace, count(*) AS n FROM memories GROUP BY 1", "--format", "csv"
    ).stdout
    assert out.splitlines() == ["namespace,n", "user:alice,1"]
    rows = json.loads(cli("sql", "SELECT text FROM memories", "--format", "json").stdout)
    assert rows == [{"text": "Alice drinks green tea"}]
    assert "forgot 1" in cli("forget", "--ns", "user:alice", "--yes").stdout
    assert json.loads(cli("stats", "--json").stdout)["tiers"]["l1"]["count"] == 0


def test_user_errors_exit_1_with_a_message(cli) -> None:  # type: ignore[no-untyped-def]
    assert "namespace" in cli("add", "x", "--ns", "bad ns", code=1).stderr
    assert "text" in cli("add", "", "--ns", "a", code=1).stderr
    assert "--meta" in cli("add", "x", "--ns", "a", "--meta", "novalue", code=1).stderr
    assert "no memory" in cli("get", "nope", code=1).stderr
    assert "only SELECT" in cli("sql", "DELETE FROM memories", code=1).stderr
    assert "--format" in cli("sql", "SELECT 1", "--format", "xml", code=1).stderr
    assert "kind" in cli("add", "x", "--ns", "a", "--kind", "dream", code=1).stderr


def test_usage_errors_exit_2(cli) -> None:  # type: ignore[no-untyped-def]
    cli("add", code=2)
    cli("search", "x", code=2)  # --ns missing
    cli("no-such-command", code=2)
    cli("search", "x", "--ns", "a", "-k", "many", code=2)


def test_help(cli) -> None:  # type: ignore[no-untyped-def]
    out = cli("--help").stdout
    for command in ("demo", "add", "search", "get", "forget", "stats", "sql", "bench"):
        assert command in out


def test_bench_runs_the_harness_in_the_checkout(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "bench"
    cli("bench", "lifecycle", "--quick", "--no-report", "--out", str(out))
    result = json.loads((out / "lifecycle.json").read_text())
    assert result["status"] == "ok" and result["quick"] is True
    assert result["l1_to_l2"]["moved"] == result["n"] > 0


def test_bench_without_a_checkout_is_a_clean_error(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = cli("bench", "--repo", str(tmp_path), "lifecycle", code=1)
    assert "no benchmarks/ found" in proc.stderr and "--repo" in proc.stderr


def test_unreachable_redis_is_a_clean_error(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [sys.executable, "-m", "tiermem.cli", "stats", "--path", str(tmp_path / "x")],
        env={**os.environ, "TIERMEM_L1__URL": "redis://127.0.0.1:1/0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "127.0.0.1:1" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_runs_on_embedded_defaults(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERMEM_")}
    env["TIERMEM_EMBEDDING__MODEL"] = "hashing"  # keep the test fast without the model extra
    proc = subprocess.run(
        [sys.executable, "-m", "tiermem.cli", "demo", "--keep", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = (
        "1. added",
        "2. search",
        "3. demoted",
        "4. default search",
        "5. deep search",
        "6. SQL",
        "7. stats",
        "8. consol",
    )
    for step in steps:
        assert step in proc.stdout
    assert "l3" in proc.stdout
    assert "semantic memory from 5 episodes" in proc.stdout
    pid_file = tmp_path / "demo" / "redis" / "redis.pid"
    assert not pid_file.exists()  # the embedded Redis was stopped


def test_plan_and_run(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nkinds:\n  episodic:\n    l1: {idle: 0s}\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'policy = "{policy}"\n')
    id_ = cli("add", "to be demoted", "--ns", "a", "--config", str(cfg)).stdout.strip()
    out = cli("plan", "demote", "--config", str(cfg)).stdout
    assert id_ in out and "idle" in out and "1 actions" in out
    data = json.loads(cli("plan", "demote", "--json", "--config", str(cfg)).stdout)
    assert [a["id"] for a in data["actions"]] == [id_]
    assert "moved 1" in cli("run", "demote", "--config", str(cfg)).stdout
    assert json.loads(cli("get", id_, "--config", str(cfg)).stdout)["tier"] == "l2"
    report = json.loads(cli("run", "demote", "--json", "--config", str(cfg)).stdout)
    assert report["moved"] == 0
    assert "unknown job" in cli("plan", "defrag", code=1).stderr


def test_worker_runs_jobs_and_stops_on_sigterm(cli) -> None:  # type: ignore[no-untyped-def]
    cli("add", "x", "--ns", "a")
    env = {**cli.env, "TIERMEM_SCHEDULER__DEMOTE": "0.5", "TIERMEM_SCHEDULER__PROMOTE": "0.5"}
    worker = Worker([], env)
    worker.wait_for("worker on")
    worker.wait_for("job demote done")
    worker.wait_for("job promote done")
    out = worker.stop()
    assert worker.proc.returncode == 0, out
    assert "worker stopped" in out, out
    assert "Traceback" not in out


def test_config_show_and_check(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shown = json.loads(cli("config", "show").stdout)
    assert shown["embedding"]["dim"] == DIM and shown["l1"]["url"]  # env overrides applied
    assert shown["policy"] == "default"
    assert "ok: config" in cli("config", "check").stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[l2]\nexact_treshold = 5\n")
    assert "l2.exact_treshold" in cli("config", "check", "--config", str(bad), code=1).stderr
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nkinds:\n  episodic:\n    l1: {idle: soon}\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'policy = "{policy}"\n')
    err = cli("config", "check", "--config", str(cfg), code=1).stderr
    assert "kinds.episodic.l1.idle" in err


def test_worker_reloads_policy_on_sighup(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import signal

    policy = tmp_path / "live.yaml"
    policy.write_text("version: 1\nkinds:\n  episodic:\n    l1: {capacity: 10}\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'policy = "{policy}"\n')
    worker = Worker(["--config", str(cfg)], cli.env)
    worker.wait_for("worker on")
    policy.write_text("version: 1\nkinds:\n  episodic:\n    l1: {idle: soon}\n")
    worker.proc.send_signal(signal.SIGHUP)
    worker.wait_for("policy reload rejected")
    policy.write_text("version: 1\nkinds:\n  episodic:\n    l1: {capacity: 20}\n")
    worker.proc.send_signal(signal.SIGHUP)
    worker.wait_for("policy reloaded")
    out = worker.stop()
    assert worker.proc.returncode == 0, out
    assert "kinds.episodic.l1.idle" in out, out


def test_worker_reloads_an_edited_policy_file_without_a_signal(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "live.yaml"
    policy.write_text("version: 1\nkinds:\n  episodic:\n    consolidate: {every: 1h}\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'policy = "{policy}"\n')
    worker = Worker(["--config", str(cfg)], {**cli.env, "TIERMEM_SCHEDULER__POLICY_WATCH": "0.2"})
    worker.wait_for("worker on")
    policy.write_text("version: 1\nkinds:\n  episodic:\n    consolidate: {every: often}\n")
    worker.wait_for("policy reload rejected")
    policy.write_text("version: 1\nkinds:\n  episodic:\n    consolidate: {every: 2s}\n")
    worker.wait_for("job consolidate: rescheduled, every 2s")
    start = next(i for i, line in enumerate(worker.lines) if "rescheduled" in line)
    deadline = time.monotonic() + 30  # a run on the new interval, not in the old hour
    while not any("job consolidate done" in line for line in worker.lines[start:]):
        assert time.monotonic() < deadline, "".join(worker.lines)
        time.sleep(0.05)
    out = worker.stop()
    assert worker.proc.returncode == 0, out
    assert out.count("policy reload rejected") == 1, out  # polled many times, logged once
    assert "kinds.episodic.consolidate.every" in out and "policy reloaded" in out, out
    assert "Traceback" not in out, out


def test_model_load_hides_the_progress_bar_and_restores_it() -> None:
    """The local model loads without transformers' progress bar on the caller's
    stderr; the caller's setting is back afterwards (skipped without the model extra)."""
    pytest.importorskip("transformers")
    from transformers.utils import logging as hf_logging

    from tiermem.embed import _quiet_load

    assert hf_logging.is_progress_bar_enabled()
    with _quiet_load():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with _quiet_load():
            pass
        assert not hf_logging.is_progress_bar_enabled()  # a caller's "off" stays off
    finally:
        hf_logging.enable_progress_bar()
