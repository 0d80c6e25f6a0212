"""The tiers benchmark's cache simulator: what selectors see, and its references."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from benchmarks import hitratio as h
from tiermem.lifecycle.selectors import SELECTORS
from tiermem.lifecycle.stats import ItemStats


def trace(keys: str) -> h.Trace:
    times = [h.T0 + timedelta(seconds=i) for i in range(len(keys))]
    return h.Trace("t", list(keys), times, "test", irm=False)


def test_an_evicted_key_comes_back_with_its_count_and_age() -> None:
    """As in the engine (test_access_count_travels_with_a_memory_across_tiers): the
    count moves with the memory; recent hits and entry time start afresh."""
    seen: dict[str, ItemStats] = {}

    def evict_b_first(items: Sequence[ItemStats], now: datetime, n: int) -> list[str]:
        seen.update((s.id, s) for s in items)
        ids = [s.id for s in items]
        return ["b"] if "b" in ids and now < h.T0 + timedelta(seconds=6) else ids[:1]

    hits = h.simulate(trace("bbbacb"), evict_b_first, capacity=2)
    # b b b: 2 hits; a; c evicts b (count 2); b misses and comes back with 2 + 1
    assert hits == 2
    b = seen["b"]
    assert (b.access_count, b.created_at, b.inserted_at) == (
        3,
        h.T0,
        h.T0 + timedelta(seconds=5),
    )
    assert b.recent_hits == ()


def test_no_selector_beats_belady_and_lfu_tracks_perfect_lfu() -> None:
    zipf = h.zipf_trace(1.0, 300, 6_000)
    cap = 15
    best = h.belady(zipf.keys, cap)
    for name in ("lru", "lfu", "fifo", "hyperbolic"):
        assert h.simulate(zipf, SELECTORS[name], cap) <= best, name
    # counts survive eviction, so lfu is within a few percent of the reference
    lfu, perfect = h.simulate(zipf, SELECTORS["lfu"], cap), h.perfect_lfu(zipf.keys, cap)
    assert lfu >= 0.95 * perfect
