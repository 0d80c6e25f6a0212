"""What `EngineMetrics` reads at scrape time (sizes, hit counters, intervals,
Redis health), as a prometheus-client collector over one engine."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tiermem.model import TIERS

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from tiermem.engine import Engine

log = logging.getLogger("tiermem.obs")


class EngineCollector(Collector):
    """What is read at scrape time: tier sizes, hit counters, intervals, Redis health."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        return list(self._collect())

    def _collect(self) -> Iterator[Metric]:
        e = self.engine
        b = e._b  # None once closed
        items = GaugeMetricFamily("tiermem_tier_items", "Memories held per tier", labels=["tier"])
        size = GaugeMetricFamily(
            "tiermem_tier_bytes", "Approximate bytes held per tier", labels=["tier"]
        )
        nss = GaugeMetricFamily(
            "tiermem_tier_namespaces", "Namespaces with memories per tier", labels=["tier"]
        )
        if b is not None:
            for tier, obj in b.tiers.items():
                try:
                    st = obj.stats()
                except Exception as exc:  # a scrape must not fail on one tier
                    log.warning("metrics: stats of %s failed: %s", tier, type(exc).__name__)
                    continue
                items.add_metric([tier], st.count)
                size.add_metric([tier], st.bytes)
                nss.add_metric([tier], st.namespaces)
        yield from (items, size, nss)

        hits = CounterMetricFamily("tiermem_hits", "Reads served per tier", labels=["tier"])
        for tier in TIERS:
            hits.add_metric([tier], e._hits[tier])
        yield hits
        yield CounterMetricFamily("tiermem_misses", "Ids read but not found", value=e._misses)

        every = GaugeMetricFamily(
            "tiermem_job_interval_seconds",
            "Seconds between runs of each job (0: off), as the current policy sets them",
            labels=["job_name"],
        )
        for job, secs in e.job_intervals().items():
            every.add_metric([job], secs)
        yield every

        embedded = "false" if b is None or b.embedded is None else "true"
        up = GaugeMetricFamily("tiermem_redis_up", "L1 Redis answers PING", labels=["embedded"])
        ping = GaugeMetricFamily(
            "tiermem_redis_ping_seconds", "Latency of PING to the L1 Redis", labels=["embedded"]
        )
        ok = False
        if b is not None:
            started = time.perf_counter()
            try:
                ok = bool(b.l1.client.ping())
            except Exception as exc:
                log.warning("metrics: Redis ping failed: %s", type(exc).__name__)
            if ok:
                ping.add_metric([embedded], time.perf_counter() - started)
        up.add_metric([embedded], 1.0 if ok else 0.0)
        yield from (up, ping)

        from tiermem import __version__

        info = GaugeMetricFamily(
            "tiermem_info", "tiermem version and mode", labels=["version", "read_only"]
        )
        info.add_metric([__version__, str(e.read_only).lower()], 1)
        yield info
