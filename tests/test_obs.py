"""Observability: metric values after a scripted workload, the HTTP exporter,
JSON logs with the promised fields, no memory text in logs, tracing no-ops,
and `tiermem worker --metrics-port` end to end."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import tiermem
from tests.conftest import OpenStore
from tests.test_engine import FakeClock
from tiermem.obs import logs, tracing

POLICY = """
version: 1
kinds:
  episodic:
    l1: {capacity: 10, evict: [lru], idle: 1h, on_full: evict}
    l2: {idle: 1d}
    l3: {retain: 30d}
    promote: {hits: 3, window: 1h, on_read: 3}
  semantic:
    l1: {capacity: 2, on_full: warn}
"""
SECRET = "zebra-7f3c"  # appears in every memory's text: must never reach a log at INFO+


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mem(open_store: OpenStore, tmp_path: Path, clock: FakeClock) -> tiermem.Engine:
    policy = tmp_path / "obs-policy.yaml"
    policy.write_text(POLICY)
    return open_store(policy=str(policy), clock=clock)


def value(mem: tiermem.Engine, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    total = 0.0
    for family in mem.metrics.registry.collect():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def workload(mem: tiermem.Engine, clock: FakeClock) -> dict[str, Any]:
    """5 adds, 2 searches, 3 gets (2 hits, 1 miss), 1 demote run."""
    ids = [mem.add(f"{SECRET} memory number {i}", namespace="a").id for i in range(5)]
    found = [mem.search(f"{SECRET} memory", namespace="a", k=2) for _ in range(2)]
    clock.advance(hours=2)
    mem.get(ids[0])
    mem.get(ids[1])
    with pytest.raises(tiermem.NotFound):
        mem.get("0190a000-0000-7000-8000-000000000000")
    report = mem.run("demote")
    return {"ids": ids, "found": found, "report": report}


def test_metrics_match_a_scripted_workload(mem: tiermem.Engine, clock: FakeClock) -> None:
    started = time.time()
    w = workload(mem, clock)
    searched = sum(len(hits) for hits in w["found"])
    assert searched == 4 and all(h.tier == "l1" for hits in w["found"] for h in hits)

    assert value(mem, "tiermem_op_seconds_count", op="add") == 5
    assert value(mem, "tiermem_op_seconds_count", op="get") == 3
    assert value(mem, "tiermem_op_seconds_count", op="get_many") == 0  # inside get: not twice
    assert value(mem, "tiermem_op_seconds_count", op="search") == 2
    assert value(mem, "tiermem_op_seconds_count", op="get", tiers="l1") == 2
    assert value(mem, "tiermem_op_seconds_count", op="get", tiers="l1+l2+l3") == 1  # the miss
    for family in mem.metrics.registry.collect():
        for s in family.samples:
            if s.name == "tiermem_op_seconds_count" and s.labels["op"] == "search":
                assert s.labels["tiers"].startswith("l1+l2")
    assert value(mem, "tiermem_tier_op_seconds_count", tier="l1", op="search") == 2

    assert value(mem, "tiermem_hits_total", tier="l1") == 2 + searched
    assert value(mem, "tiermem_hits_total", tier="l2") == 0
    assert value(mem, "tiermem_misses_total") == 1
    stats = mem.stats()
    assert stats.hits["l1"] == value(mem, "tiermem_hits_total", tier="l1")
    assert stats.misses == value(mem, "tiermem_misses_total")
    assert value(mem, "tiermem_errors_total", op="get", type="NotFound") == 1
    assert value(mem, "tiermem_errors_total") == 1

    # demote: the 3 memories not read in the last hour went l1 -> l2
    assert w["report"].moved == 3
    assert value(mem, "tiermem_moves_total", job_name="demote", src="l1", dst="l2") == 3
    assert value(mem, "tiermem_moves_total") == 3
    assert value(mem, "tiermem_job_runs_total", job_name="demote", outcome="ok") == 1
    assert value(mem, "tiermem_job_seconds_count", job_name="demote") == 1
    assert value(mem, "tiermem_deletes_total", job_name="demote") == 0
    assert value(mem, "tiermem_job_last_success_timestamp_seconds", job_name="demote") >= started
    assert value(mem, "tiermem_job_interval_seconds", job_name="demote") == 300
    want = mem.job_intervals()["consolidate"]  # from the policy's consolidate.every
    assert value(mem, "tiermem_job_interval_seconds", job_name="consolidate") == want

    assert value(mem, "tiermem_tier_items", tier="l1") == 2
    assert value(mem, "tiermem_tier_items", tier="l2") == 3
    assert value(mem, "tiermem_tier_items", tier="l3") == 0
    assert value(mem, "tiermem_tier_bytes", tier="l2") > 0
    assert value(mem, "tiermem_tier_namespaces", tier="l1") == 1
    assert value(mem, "tiermem_redis_up", embedded="false") == 1
    assert value(mem, "tiermem_redis_ping_seconds") > 0


def test_moves_deletes_evictions_by_job(mem: tiermem.Engine, clock: FakeClock) -> None:
    ids = [mem.add(f"{SECRET} {i}", namespace="b").id for i in range(12)]  # capacity 10: evict
    evicted = value(mem, "tiermem_evictions_total", tier="l1", selector="lru")
    assert evicted > 0
    assert value(mem, "tiermem_moves_total", job_name="evict", src="l1", dst="l2") == evicted
    assert value(mem, "tiermem_tier_items", tier="l1") == 12 - evicted
    back = next(m.id for m in mem.scan(tiers=["l2"]))
    for _ in range(3):
        mem.get(back)  # the third get reads it through into L1 (on_read: 3)
    assert value(mem, "tiermem_moves_total", job_name="promote-on-read", src="l2", dst="l1") == 1
    l1 = [m.id for m in mem.scan(tiers=["l1"])]
    mem.demote(l1[0], to="l3")  # a user's move
    assert value(mem, "tiermem_moves_total", job_name="user", src="l1", dst="l3") == 1
    mem.delete(ids[-1])  # a user's delete: not a job's
    assert value(mem, "tiermem_deletes_total") == 0
    clock.advance(days=40)  # past l2 idle (moves to l3) then L3 retention (expire deletes)
    mem.run("demote")
    report = mem.run("expire")
    assert report.deleted > 0
    assert value(mem, "tiermem_deletes_total", job_name="expire") == report.deleted
    with pytest.raises(tiermem.ValidationError):
        mem.run("no-such-job")
    assert value(mem, "tiermem_job_runs_total", job_name="other", outcome="error") == 1
    assert value(mem, "tiermem_errors_total", op="run", type="ValidationError") == 1


def test_registries_are_per_engine(open_store: OpenStore, tmp_path: Path) -> None:
    a = open_store(tmp_path / "a")
    b = open_store(tmp_path / "b", overrides={"l1.prefix": f"{a.backends.l1.keys.prefix}b"})
    a.add("one", namespace="n")
    assert a.metrics.registry is not b.metrics.registry
    assert value(a, "tiermem_op_seconds_count", op="add") == 1
    assert value(b, "tiermem_op_seconds_count", op="add") == 0


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
        assert resp.headers["Content-Type"].startswith("text/plain")
    return body.decode()


def test_exporter_serves_prometheus_text(mem: tiermem.Engine, clock: FakeClock) -> None:
    workload(mem, clock)
    server = mem.serve_metrics(port=0)
    assert server.server_address[0] == "127.0.0.1"
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    families = {f.name: f for f in text_string_to_metric_families(_fetch(url))}
    for name in ("tiermem_tier_items", "tiermem_hits", "tiermem_op_seconds", "tiermem_redis_up"):
        assert name in families
    items = {s.labels["tier"]: s.value for s in families["tiermem_tier_items"].samples}
    assert items == {"l1": 2, "l2": 3, "l3": 0}
    assert families["tiermem_op_seconds"].type == "histogram"
    assert mem.serve_metrics(port=0) is server  # one server per engine
    mem.close()  # stops the server
    with pytest.raises(urllib.error.URLError):
        _fetch(url)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    logs.configure("DEBUG", json=True, modules={"tiermem.jobs": "INFO"}, stream=buf)
    try:
        yield buf
    finally:
        logs.reset()
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("tiermem.jobs").setLevel(logging.NOTSET)


def _lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_logs_are_json_with_job_and_run(
    mem: tiermem.Engine, clock: FakeClock, json_logs: io.StringIO
) -> None:
    report = workload(mem, clock)["report"]
    lines = _lines(json_logs)
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
        assert line["time"].endswith("+00:00")
    jobs = [line for line in lines if line["logger"] == "tiermem.jobs"]
    assert jobs and all(line["level"] == "INFO" for line in jobs)  # module level: INFO
    for line in jobs:
        assert line["job"] == "demote"
        assert line["run"] == report.run
        assert f"job demote run {report.run}" in line["message"]
    events = mem.sql("SELECT DISTINCT run FROM events WHERE job = 'demote'").to_pylist()
    assert {e["run"] for e in events} == {report.run}  # the same correlation id


def test_text_logs_show_fields() -> None:
    buf = io.StringIO()
    logs.configure("INFO", stream=buf)
    try:
        logging.getLogger("tiermem.jobs").info("job x", extra={"job": "x", "run": "r1"})
    finally:
        logs.reset()
    assert buf.getvalue().rstrip().endswith("INFO tiermem.jobs: job x job=x run=r1")


def test_bad_log_level_names_the_key() -> None:
    with pytest.raises(tiermem.ConfigError, match=r"log\.modules\.tiermem"):
        logs.configure("INFO", modules={"tiermem": "LOUD"})
    logs.reset()
    with pytest.raises(tiermem.ConfigError, match=r"log\.level"):
        tiermem.load_config(None, {"log.level": "LOUD"})


def test_no_memory_text_at_info_or_above(
    mem: tiermem.Engine, clock: FakeClock, json_logs: io.StringIO
) -> None:
    logging.getLogger("tiermem.jobs").setLevel(logging.NOTSET)
    workload(mem, clock)
    mem.add_many(
        [{"text": f"{SECRET} bulk {i}", "namespace": "a"} for i in range(3)]
        + [{"text": f"{SECRET} bad", "namespace": "a", "importance": 7}]
    )
    for i in range(3):  # semantic capacity 2, on_full warn: logs a warning
        mem.add(f"{SECRET} fact {i}", namespace="a", kind="semantic")
    hit = mem.search(f"{SECRET}", namespace="a", k=1)[0].memory
    mem.update(hit.id, text=f"{SECRET} edited")
    for job in ("promote", "expire", "consolidate", "compact", "checkpoint"):
        mem.run(job)
    clock.advance(days=40)
    for job in ("demote", "expire"):
        mem.run(job)
    with pytest.raises(tiermem.TierMemError):  # QueryError: the statement may hold text
        mem.sql(f"DELETE FROM memories WHERE text = '{SECRET}'")
    lines = _lines(json_logs)
    assert any(line["level"] == "INFO" for line in lines)
    for line in lines:
        if line["level"] != "DEBUG":
            assert SECRET not in json.dumps(line), line


def test_tracing_is_a_noop_without_opentelemetry(mem: tiermem.Engine) -> None:
    with tracing.span("tiermem.test", job="demote", skipped=None) as sp:
        sp.set_attribute("run", "abc")
    if not tracing.enabled():
        assert mem.run("checkpoint").errors == []


def test_spans_carry_the_run_id(mem: tiermem.Engine) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    report = mem.run("demote")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["tiermem.job"].attributes is not None
    assert spans["tiermem.job"].attributes["run"] == report.run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_worker_serves_metrics_while_jobs_run(tmp_path: Path, redis_url: str, prefix: str) -> None:
    port = _free_port()
    env = dict(os.environ)
    env.update(
        TIERMEM_PATH=str(tmp_path / "store"),
        TIERMEM_L1__URL=redis_url,
        TIERMEM_L1__PREFIX=prefix,
        TIERMEM_EMBEDDING__DIM="32",
        TIERMEM_EMBEDDING__MODEL="hashing",
        TIERMEM_SCHEDULER__CHECKPOINT="1",
        TIERMEM_LOG__FORMAT="json",
    )
    cmd = [sys.executable, "-m", "tiermem.cli", "worker", "--metrics-port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        families: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                text = _fetch(f"http://127.0.0.1:{port}/metrics")
            except (urllib.error.URLError, ConnectionError):
                continue
            families = {f.name: f for f in text_string_to_metric_families(text)}
            runs = families.get("tiermem_job_runs")
            if runs and any(s.labels.get("job_name") == "checkpoint" for s in runs.samples):
                break
        else:
            pytest.fail("the worker never reported a checkpoint run")
        assert "tiermem_redis_up" in families
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(r["logger"] == "tiermem.worker" for r in records)
