"""The engine-level replay (benchmarks/replay.py) on real Redis and real tier files.

A Zipf trace of 900 requests over 400 keys, one request a minute (15 h: the
default `idle: 1h` demotion and the 10-min job runs both happen), through
the default policy with its episodic L1 capacity cut to 40, so L1 overflows.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from benchmarks import hitratio, replay, suites
from tiermem.resources import shipped_policy

CAPACITY = 40
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def small_policy(tmp_path: Path) -> str:
    """The shipped default policy with episodic `l1.capacity` CAPACITY (the only change)."""
    text = shipped_policy("default").read_text()
    assert text.count("capacity: 1000 ") == 1  # the episodic L1 line, nothing else
    path = tmp_path / "small.yaml"
    path.write_text(text.replace("capacity: 1000 ", f"capacity: {CAPACITY} "))
    return str(path)


def trace() -> hitratio.Trace:
    base = hitratio.zipf_trace(0.9, 400, 900, seed=1)
    times = [T0 + timedelta(minutes=i) for i in range(len(base.keys))]
    return dataclasses.replace(base, times=times)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> dict[str, Any]:
    """One replay, its summary and the engine's own read counters (taken before close)."""
    policy = small_policy(tmp_path_factory.mktemp("policy"))
    tr = trace()
    with replay.store(redis_url, policy) as (mem, clock):
        tally = replay.replay(mem, clock, tr)
        hits = mem.stats().hits
        capacity = mem.policy.for_kind("episodic").l1.capacity
        events = replay.event_moves(mem)
    assert capacity == CAPACITY
    return {"summary": replay.summary(tr, tally, CAPACITY, 1.0, events), "hits": hits}


def test_every_request_is_counted_once(result: dict[str, Any]) -> None:
    s = result["summary"]
    assert sum(s["served"].values()) == s["requests"] == 900
    assert s["served"]["miss"] == s["distinct_keys"] == len(set(trace().keys))
    assert sum(s["share"].values()) == pytest.approx(1.0)


def test_tiers_served_match_the_engines_own_counters(result: dict[str, Any]) -> None:
    """The tier read from (Memory.tier) is the tier the engine counted the read in."""
    served = result["summary"]["served"]
    assert {t: served[t] for t in ("l1", "l2", "l3")} == result["hits"]


def test_an_overflowing_l1_serves_from_l2_and_moves(result: dict[str, Any]) -> None:
    s = result["summary"]
    assert s["distinct_keys"] > CAPACITY
    assert s["served"]["l2"] > 0
    assert s["jobs"]["demote"]["moved"] > 0  # idle 1h (L1's LRU end waits longer to go)
    # read-through (the default's promote.on_read: 1): every read from L2 brings the
    # memory into L1, so the promote job finds nothing left in L2 to promote
    assert s["moves_in_events"]["promote-on-read"] == s["served"]["l2"]
    assert s["jobs"]["promote"]["moved"] == 0
    assert s["moves_in_events"].get("evict", 0) > 0  # add or read-through over capacity
    assert s["job_runs"] == 89  # 899 min of requests: one run every 10 min


def test_job_reports_agree_with_the_events_log(result: dict[str, Any]) -> None:
    s = result["summary"]
    for job in replay.JOBS:
        assert s["jobs"][job]["moved"] == s["moves_in_events"].get(job, 0)


def test_l1_never_beats_belady(result: dict[str, Any]) -> None:
    s = result["summary"]
    assert s["belady"] == hitratio.belady(trace().keys, CAPACITY) / 900
    assert 0 < s["l1_hit_ratio"] <= s["belady"]


def test_job_boundaries_first_and_last_in_a_gap() -> None:
    step = replay.EVERY
    assert replay.boundaries(T0, T0, T0 + step / 2) == []
    assert replay.boundaries(T0, T0, T0 + step) == [T0 + step]
    assert replay.boundaries(T0, T0 + step, T0 + step) == []  # (prev, now]: not twice
    assert replay.boundaries(T0, T0 + step / 2, T0 + 5 * step + step / 3) == [
        T0 + step,
        T0 + 5 * step,
    ]


def test_zipf_rows_carry_the_static_oracle_bound(result: dict[str, Any]) -> None:
    """The bound online policies face on IRM traces: no better than Belady, and the
    goal row says whether 0.9x Belady is within it."""
    s = result["summary"]
    oracle = hitratio.static_oracle(trace().keys, CAPACITY) / 900
    assert s["static_oracle"] == oracle
    assert 0 < oracle <= s["belady"]
    assert s["oracle_to_belady"] == pytest.approx(oracle / s["belady"])
    assert s["ratio_to_oracle"] == pytest.approx(s["l1_hit_ratio"] / oracle)
    (row,) = suites.replay_goals({"results": [s]})
    reach = "reachable" if s["oracle_to_belady"] >= 0.9 else "unreachable for online policies"
    assert f"static oracle {s['oracle_to_belady']:.2f}x Belady: {reach}" in row["goal"]


def test_traces_with_no_known_bound_say_so() -> None:
    """Chat requests are not independent: no static-oracle figure, no bound in the row."""
    tr = dataclasses.replace(trace(), irm=False)
    s = replay.summary(tr, replay.Tally(), CAPACITY, 1.0, {})
    assert s["static_oracle"] is s["oracle_to_belady"] is s["ratio_to_oracle"] is None
    (row,) = suites.replay_goals({"results": [s]})
    assert "oracle" not in row["goal"]
