"""Prometheus metrics for one `Engine`: its own registry, so engines never collide.

`EngineMetrics(engine)` instruments the engine *on the instance* (wrapping its
public methods, its `Lifecycle.apply`, its `Mover.move` and its tiers' `get` /
`search`) and registers a collector that reads sizes, hit counters and Redis
health at scrape time. `Engine.serve_metrics()` serves the registry over HTTP.

Metrics (``job_name`` is the lifecycle job — ``job`` would clash with the
label Prometheus adds to every scraped series):

- ``tiermem_tier_items{tier}``, ``tiermem_tier_bytes{tier}``,
  ``tiermem_tier_namespaces{tier}`` — gauges, from each tier's ``stats()`` at scrape
- ``tiermem_hits_total{tier}``, ``tiermem_misses_total`` — reads served per tier / missed
- ``tiermem_op_seconds{op,tiers}`` — histogram of public Engine calls; ``tiers``
  lists the tiers the call read (``l1+l2``, ``l1+l2+l3``, ``none``)
- ``tiermem_tier_op_seconds{tier,op}`` — histogram of each tier's get/search
- ``tiermem_errors_total{op,type}`` — exceptions raised by public Engine calls
- ``tiermem_moves_total{job_name,src,dst}`` — memories moved (``user``: promote/demote/
  supersede calls; ``evict``: capacity eviction at write or read-through time;
  ``promote-on-read``: read-through promotion by a get)
- ``tiermem_deletes_total{job_name}``, ``tiermem_consolidation_merges_total``
- ``tiermem_evictions_total{tier,selector}`` — capacity victims by the selector that picked them
- ``tiermem_job_seconds{job_name}`` — histogram of job runs
- ``tiermem_job_runs_total{job_name,outcome}`` — ``ok`` or ``error`` (raised, or a failed batch)
- ``tiermem_job_last_success_timestamp_seconds{job_name}`` — unix time of the last run
  without errors; for scheduled jobs it starts at the time metrics started, so a
  job that never succeeds ages from the worker's start
- ``tiermem_job_interval_seconds{job_name}`` — scheduler interval (0: off), consolidate
  from the current policy (follows a reload)
- ``tiermem_redis_up{embedded}``, ``tiermem_redis_ping_seconds{embedded}`` — at scrape
- ``tiermem_info{version,read_only}`` — always 1
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tiermem.lifecycle.planned import rows_of
from tiermem.model import TIERS, Action, JobReport
from tiermem.obs.collector import EngineCollector
from tiermem.obs.tracing import span

if TYPE_CHECKING:
    from tiermem.engine import Engine

log = logging.getLogger("tiermem.obs")

# Public Engine calls timed by tiermem_op_seconds (scan is a generator: not timed).
OPS = (
    "add",
    "add_many",
    "get",
    "get_many",
    "search",
    "sql",
    "update",
    "delete",
    "delete_many",
    "forget",
    "promote",
    "demote",
    "pin",
    "unpin",
    "versions",
    "rollback",
    "plan",
    "stats",
    "export",
    "import_",
    "check",
)
JOB_LABELS = (
    *("demote", "promote", "expire", "consolidate", "compact", "checkpoint"),
    *("evict", "promote-on-read"),  # moves made by an add over capacity, by a get
)
OP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 900)
_EVICTED_BY = re.compile(r"picked by (\S+)$")  # planners._evict's reason

# Per thread/task: the tiers read by the public call in progress (None: no call),
# and the lifecycle job in progress (None: a user's call).
_reads: ContextVar[set[str] | None] = ContextVar("tiermem_reads", default=None)
_job: ContextVar[str | None] = ContextVar("tiermem_job", default=None)

Fn = Callable[..., Any]


def _job_label(job: str) -> str:
    return job if job in JOB_LABELS else "other"  # bounded label values


def _patch(obj: object, name: str, wrap: Callable[[Fn], Fn]) -> None:
    setattr(obj, name, wrap(getattr(obj, name)))


class EngineMetrics:
    """The metrics of one engine, in `registry` (a private `CollectorRegistry`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.registry = r = CollectorRegistry()
        self.op_seconds = Histogram(
            "tiermem_op_seconds",
            "Latency of public Engine calls, by the tiers they read",
            ["op", "tiers"],
            buckets=OP_BUCKETS,
            registry=r,
        )
        self.tier_op_seconds = Histogram(
            "tiermem_tier_op_seconds",
            "Latency of one tier's get/search",
            ["tier", "op"],
            buckets=OP_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "tiermem_errors", "Exceptions raised by public Engine calls", ["op", "type"], registry=r
        )
        self.moves = Counter(
            "tiermem_moves", "Memories moved between tiers", ["job_name", "src", "dst"], registry=r
        )
        self.deletes = Counter(
            "tiermem_deletes", "Memories deleted by lifecycle jobs", ["job_name"], registry=r
        )
        self.merges = Counter(
            "tiermem_consolidation_merges", "Memories merged by consolidation", registry=r
        )
        self.evictions = Counter(
            "tiermem_evictions",
            "Capacity victims moved colder, by the selector that picked them",
            ["tier", "selector"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "tiermem_job_seconds",
            "Duration of lifecycle job runs",
            ["job_name"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.job_runs = Counter(
            "tiermem_job_runs", "Lifecycle job runs by outcome", ["job_name", "outcome"], registry=r
        )
        self.job_last_success = Gauge(
            "tiermem_job_last_success_timestamp_seconds",
            "Unix time of the job's last run without errors (scheduled jobs: metrics start "
            "until then)",
            ["job_name"],
            registry=r,
        )
        r.register(EngineCollector(engine))
        now = time.time()
        for job, every in engine.config.scheduler.intervals().items():
            if every > 0:
                self.job_last_success.labels(job).set(now)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._instrument()

    # -- the exporter ----------------------------------------------------------------------

    def serve(self, port: int = 9108, addr: str = "127.0.0.1") -> WSGIServer:
        """Serve this registry at http://addr:port/ (port 0: any free port; see
        ``server.server_port``). One server per engine; stopped on `stop` / engine close."""
        if self._server is None:
            self._server, self._thread = start_http_server(port, addr, registry=self.registry)
            log.info("metrics on http://%s:%d/metrics", addr, self._server.server_port)
        return self._server

    def stop(self) -> None:
        """Stop the HTTP server (if serving)."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5)

    # -- recording -------------------------------------------------------------------------

    def record(self, report: JobReport, seconds: float | None = None) -> None:
        """Record a finished job run (the hook the wrapped `Engine.run` calls)."""
        job = _job_label(report.job)
        self.job_runs.labels(job, "error" if report.errors else "ok").inc()
        self.job_seconds.labels(job).observe(report.seconds if seconds is None else seconds)
        self.deletes.labels(job).inc(report.deleted)
        if report.merged:
            self.merges.inc(report.merged)
        if not report.errors:
            self.job_last_success.labels(job).set_to_current_time()

    def _evicted(self, actions: Sequence[Action]) -> None:
        # by rows, not Actions: a 100k demote's plan is columns (lifecycle/planned.py)
        counts: dict[tuple[str, str], int] = {}
        for _, _, verb, src, _, reason in rows_of(actions):
            if verb == "move" and reason and "picked by" in reason:
                m = _EVICTED_BY.search(reason)
                if m:
                    counts[src, m.group(1)] = counts.get((src, m.group(1)), 0) + 1
        for (src, by), n in counts.items():
            self.evictions.labels(src, by).inc(n)

    # -- instrumentation (on the instance: the class stays untouched) ----------------------

    def _instrument(self) -> None:
        e = self.engine
        for name in OPS:
            if hasattr(e, name):
                _patch(e, name, functools.partial(self._op, name))
        for name, wrap in (("run", self._run), ("close", self._close)):
            _patch(e, name, wrap)
        _patch(e.lifecycle, "apply", self._apply)
        _patch(e.mover, "move", self._move)
        for tier, obj in e.backends.tiers.items():
            # `find` is the read path's search (tiers/found.py): timed as a search
            for method, op in (("get", "get"), ("search", "search"), ("find", "search")):
                _patch(obj, method, functools.partial(self._tier_op, tier, op))

    def _op(self, op: str, fn: Fn) -> Fn:
        hist, errors = self.op_seconds, self.errors

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if _reads.get() is not None:  # inside another public call: counted there
                return fn(*args, **kwargs)
            read: set[str] = set()
            token = _reads.set(read)
            started = time.perf_counter()
            try:
                with span(f"tiermem.{op}"):
                    return fn(*args, **kwargs)
            except Exception as exc:
                errors.labels(op, type(exc).__name__).inc()
                raise
            finally:
                _reads.reset(token)
                tiers = "+".join(t for t in TIERS if t in read) or "none"
                hist.labels(op, tiers).observe(time.perf_counter() - started)

        return timed

    def _run(self, fn: Fn) -> Fn:
        @functools.wraps(fn)
        def run(job: str, *args: Any, **kwargs: Any) -> JobReport:
            label = _job_label(job)
            token = _job.set(label)
            started = time.perf_counter()
            try:
                with span("tiermem.job", job=job) as sp:
                    report: JobReport = fn(job, *args, **kwargs)
                    sp.set_attribute("run", report.run)
                    sp.set_attribute("moved", report.moved)
                    sp.set_attribute("errors", len(report.errors))
            except Exception as exc:
                self.errors.labels("run", type(exc).__name__).inc()
                self.job_runs.labels(label, "error").inc()
                self.job_seconds.labels(label).observe(time.perf_counter() - started)
                raise
            finally:
                _job.reset(token)
            self.record(report, time.perf_counter() - started)
            return report

        return run

    def _apply(self, fn: Fn) -> Fn:
        @functools.wraps(fn)
        def apply(
            job: str, actions: Sequence[Action], now: datetime, *args: Any, **kwargs: Any
        ) -> JobReport:
            outer = _job.get()
            token = _job.set(outer or _job_label(job))
            try:
                with span("tiermem.apply", job=job, actions=len(actions)) as sp:
                    report: JobReport = fn(job, actions, now, *args, **kwargs)
                    sp.set_attribute("run", report.run)
            finally:
                _job.reset(token)
            if outer is None:  # not inside Engine.run (capacity eviction at write time)
                self.deletes.labels(_job_label(job)).inc(report.deleted)
            if not report.errors:
                self._evicted(actions)
            return report

        return apply

    def _move(self, fn: Fn) -> Fn:
        moves = self.moves

        @functools.wraps(fn)
        def move(src: str, dst: str, ids: Sequence[str], *args: Any, **kwargs: Any) -> int:
            n: int = fn(src, dst, ids, *args, **kwargs)
            if n:
                moves.labels(_job.get() or "user", src, dst).inc(n)
            return n

        return move

    def _tier_op(self, tier: str, op: str, fn: Fn) -> Fn:
        hist = self.tier_op_seconds.labels(tier, op)

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            read = _reads.get()
            if read is not None:
                read.add(tier)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                hist.observe(time.perf_counter() - started)

        return timed

    def _close(self, fn: Fn) -> Fn:
        @functools.wraps(fn)
        def close() -> None:
            try:
                self.stop()
            finally:
                fn()

        return close
