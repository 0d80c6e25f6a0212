"""Eviction selectors against obviously-correct reference models.

A trace is a list of (op, key, seconds since the previous event) replayed two
ways: into `ItemStats` snapshots the way the tiers keep them, and into a
plain model per selector (an OrderedDict for lru, a Counter for lfu, a deque
for fifo, a literal hand or queue simulation for sieve and s3fifo, the
rule recomputed from the event times for hyperbolic). Times
strictly increase, so the reference orders have no ties; ties are tested
apart.

Stats as the tiers keep them: a new memory enters with last_accessed_at =
inserted_at = t, access_count 0, no hits; a get sets last_accessed_at, adds
one to access_count and appends to recent_hits (the last 8 kept); a drop
takes it out of the tier and a later put brings it back (as a move from
another tier would) with its access stats kept and inserted_at = t.
"""

from __future__ import annotations

import math
import random
import textwrap
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiermem.errors import PolicyError
from tiermem.lifecycle import selectors as sel
from tiermem.lifecycle.stats import ItemStats

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HITS_KEPT = 8
KEYS = [f"k{i:02d}" for i in range(10)]


@dataclass
class Replay:
    """One trace replayed into snapshots and into every reference model."""

    now: datetime
    stats: dict[str, ItemStats] = field(default_factory=dict)  # in the tier
    away: dict[str, ItemStats] = field(default_factory=dict)  # dropped, stats kept
    recency: OrderedDict[str, None] = field(default_factory=OrderedDict)  # lru order
    gets: Counter[str] = field(default_factory=Counter)  # lifetime accesses
    queue: deque[str] = field(default_factory=deque)  # fifo order of the tier
    since_insert: Counter[str] = field(default_factory=Counter)  # gets since entering
    created: dict[str, datetime] = field(default_factory=dict)  # first put
    entered: dict[str, datetime] = field(default_factory=dict)  # last put into the tier
    get_times: dict[str, list[datetime]] = field(default_factory=dict)  # every get, in order


Event = tuple[str, int, int]
events = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "get", "get", "get", "drop"]),
        st.integers(0, len(KEYS) - 1),
        st.integers(1, 7200),
    ),
    max_size=60,
)
keyed_floats = st.lists(st.floats(0, 1), min_size=len(KEYS), max_size=len(KEYS))
ttls = st.lists(st.none() | st.integers(-3600, 36_000), min_size=len(KEYS), max_size=len(KEYS))
pins = st.frozensets(st.sampled_from(KEYS), max_size=4)


def replay(
    trace: list[Event],
    pinned: frozenset[str] = frozenset(),
    importance: list[float] | None = None,
    ttl: list[int | None] | None = None,
    tail: int = 60,
) -> Replay:
    t = T0
    r = Replay(now=T0)
    for op, k, dt in trace:
        t += timedelta(seconds=dt)
        key = KEYS[k]
        if op == "put" and key not in r.stats:
            r.queue.append(key)
            r.since_insert[key] = 0
            r.entered[key] = t
            if key in r.away:
                r.stats[key] = _replace(r.away.pop(key), inserted_at=t)
                continue
            r.recency[key] = None
            r.recency.move_to_end(key)
            r.created[key] = t
            off = ttl[k] if ttl else None
            r.stats[key] = ItemStats(
                id=key,
                namespace="ns",
                kind="episodic",
                created_at=t,
                inserted_at=t,
                last_accessed_at=t,
                access_count=0,
                importance=importance[k] if importance else 0.5,
                expires_at=None if off is None else t + timedelta(seconds=off),
                pinned=key in pinned,
            )
        elif op == "get" and key in r.stats:
            r.recency.move_to_end(key)
            r.gets[key] += 1
            r.since_insert[key] += 1
            r.get_times.setdefault(key, []).append(t)
            s = r.stats[key]
            r.stats[key] = _replace(
                s,
                last_accessed_at=t,
                access_count=s.access_count + 1,
                recent_hits=(*s.recent_hits, t)[-HITS_KEPT:],
            )
        elif op == "drop" and key in r.stats:
            r.away[key] = r.stats.pop(key)
            r.queue.remove(key)
    r.now = t + timedelta(seconds=tail)
    return r


def _replace(s: ItemStats, **changes: object) -> ItemStats:
    fields = {name: getattr(s, name) for name in ItemStats.__slots__}
    return ItemStats(**{**fields, **changes})


def items(r: Replay) -> list[ItemStats]:
    return list(r.stats.values())


def unpinned(r: Replay, order: list[str]) -> list[str]:
    return [k for k in order if k in r.stats and not r.stats[k].pinned]


# -- reference models ---------------------------------------------------------------


def ref_lru(r: Replay, n: int) -> list[str]:
    return unpinned(r, list(r.recency))[:n]


def ref_lfu(r: Replay, n: int) -> list[str]:
    rank = {k: i for i, k in enumerate(r.recency)}
    return sorted(unpinned(r, list(r.stats)), key=lambda k: (r.gets[k], rank[k]))[:n]


def ref_fifo(r: Replay, n: int) -> list[str]:
    return unpinned(r, list(r.queue))[:n]


def ref_ttl(r: Replay, n: int) -> list[str]:
    live = [r.stats[k] for k in unpinned(r, list(r.stats))]
    expired = [s for s in live if s.expires_at is not None and s.expires_at <= r.now]
    return [s.id for s in sorted(expired, key=lambda s: (s.expires_at, s.id))][:n]


def ref_sieve(r: Replay, n: int) -> list[str]:
    """SIEVE's hand, literally: from the tail, clear-and-skip visited, evict unvisited."""
    queue = unpinned(r, list(r.queue))
    visited = {k: r.since_insert[k] > 0 for k in queue}
    out: list[str] = []
    hand, want = 0, min(n, len(queue))
    while len(out) < want:
        k = queue[hand]
        if visited[k]:
            visited[k] = False
            hand = (hand + 1) % len(queue)
        else:
            out.append(k)
            queue.pop(hand)
            hand = hand % len(queue) if queue else 0
    return out


def ref_s3fifo(r: Replay, n: int) -> list[str]:
    """The paper's evictS/evictM loops on queues built from the snapshot."""
    queue = unpinned(r, list(r.queue))
    small_size = -(-len(queue) // 10)
    small = deque(queue[len(queue) - small_size :])
    main = deque(queue[: len(queue) - small_size])
    freq = {k: min(3, r.since_insert[k]) for k in queue}
    out: list[str] = []
    while len(out) < min(n, len(queue)):
        if small:
            k = small.popleft()
            if freq[k] > 1:
                freq[k] = 0
                main.append(k)
            else:
                out.append(k)
        else:
            k = main.popleft()
            if freq[k] > 0:
                freq[k] -= 1
                main.append(k)
            else:
                out.append(k)
    return out


def ref_score(r: Replay, n: int) -> list[str]:
    live = [r.stats[k] for k in unpinned(r, list(r.stats))]
    top = max((s.access_count for s in live), default=0)

    def value(s: ItemStats) -> float:
        hours = (r.now - s.last_accessed_at).total_seconds() / 3600
        freq = math.log1p(s.access_count) / math.log1p(top) if top else 0.0
        w = 1 / 3
        recency: float = 0.995**hours
        return w * recency + w * s.importance + w * freq

    return [s.id for s in sorted(live, key=lambda s: (value(s), s.last_accessed_at, s.id))][:n]


def ref_hyperbolic(r: Replay, n: int) -> list[str]:
    """Burst over (improbable silence for the kept gaps) first, by last access; then by rate."""
    threshold = math.log(1e4)

    def rank(k: str) -> tuple[int, float, datetime, str]:
        times = r.get_times.get(k, [])
        last = times[-1] if times else r.created[k]
        kept = times[-HITS_KEPT:]
        if len(kept) >= 2:
            gaps, span = len(kept) - 1, (kept[-1] - kept[0]).total_seconds()
        elif times:
            gaps, span = 1, (last - r.entered[k]).total_seconds()
        else:
            gaps, span = 0, 0.0
        idle = (r.now - last).total_seconds()
        if span > 0 and idle > 0 and gaps * math.log1p(idle / span) > threshold:
            return (1, 0.0, last, k)
        age = (r.now - r.created[k]).total_seconds()
        return (2, (r.gets[k] + 0.01) / age if age > 0 else math.inf, last, k)

    return sorted(unpinned(r, list(r.stats)), key=rank)[:n]


REFERENCES = {
    "ttl": ref_ttl,
    "lru": ref_lru,
    "lfu": ref_lfu,
    "fifo": ref_fifo,
    "sieve": ref_sieve,
    "s3fifo": ref_s3fifo,
    "score": ref_score,
    "hyperbolic": ref_hyperbolic,
}


def test_every_builtin_has_a_reference() -> None:
    assert set(REFERENCES) == set(sel.SELECTORS)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@settings(max_examples=300, deadline=None)
@given(trace=events, pinned=pins, imp=keyed_floats, ttl=ttls, n=st.integers(0, 12))
def test_matches_reference(
    name: str,
    trace: list[Event],
    pinned: frozenset[str],
    imp: list[float],
    ttl: list[int | None],
    n: int,
) -> None:
    r = replay(trace, pinned, imp, ttl)
    assert sel.SELECTORS[name](items(r), r.now, n) == REFERENCES[name](r, n)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@settings(max_examples=100, deadline=None)
@given(trace=events, pinned=pins, ttl=ttls, n=st.integers(0, 12), seed=st.integers(0, 99))
def test_selector_contract(
    name: str,
    trace: list[Event],
    pinned: frozenset[str],
    ttl: list[int | None],
    n: int,
    seed: int,
) -> None:
    """Never pinned, at most n, no duplicates, input order irrelevant, n=0 -> []."""
    r = replay(trace, pinned, ttl=ttl)
    select = sel.SELECTORS[name]
    got = select(items(r), r.now, n)
    assert len(got) == len(set(got)) <= n
    assert not {k for k in got if r.stats[k].pinned}
    shuffled = items(r)
    random.Random(seed).shuffle(shuffled)
    assert select(shuffled, r.now, n) == got
    assert select(items(r), r.now, 0) == []
    everything = select(items(r), r.now, len(KEYS) + 5)
    if name == "ttl":
        assert set(everything) == set(ref_ttl(r, len(KEYS)))
    else:
        assert set(everything) == set(unpinned(r, list(r.stats)))
    assert got == everything[:n]  # a smaller n is a prefix


def _same_time(ids: list[str], **kw: object) -> list[ItemStats]:
    base = {"namespace": "n", "kind": "k", "access_count": 0, **kw}
    t = {"created_at": T0, "inserted_at": T0, "last_accessed_at": T0}
    return [ItemStats(id=i, **{**t, **base}) for i in ids]  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_ties_broken_by_id(name: str) -> None:
    stats = _same_time(["c", "a", "d", "b"], expires_at=T0)
    # s3fifo: the newest 10% (rounded up: "d", last by id) is its small queue, evicted first
    expected = ["d", "a", "b"] if name == "s3fifo" else ["a", "b", "c"]
    assert sel.SELECTORS[name](stats, T0, 3) == expected


def test_ttl_returns_only_expired() -> None:
    stats = _same_time(["a"], expires_at=T0 + timedelta(seconds=1))
    stats += _same_time(["b"]) + _same_time(["c"], expires_at=T0 - timedelta(seconds=1))
    stats += _same_time(["d"], expires_at=T0)
    assert sel.ttl(stats, T0, 10) == ["c", "d"]


def test_hit_without_kept_hit_times_counts_once() -> None:
    """recent_hits may have dropped old hits; last_accessed_at still tells of one."""
    later = T0 + timedelta(hours=1)
    (s,) = _same_time(["a"], access_count=40)
    hit = _replace(s, last_accessed_at=later)
    assert sel.hits_since_insert(s) == 0  # access_count (lifetime) is not used
    assert sel.hits_since_insert(hit) == 1
    assert sel.sieve([hit, *_same_time(["b"])], later, 1) == ["b"]


def test_score_weighs_importance() -> None:
    low, high = _same_time(["a"], importance=0.1), _same_time(["b"], importance=0.9)
    assert sel.score(high + low, T0, 2) == ["a", "b"]
    only_recency = sel.make_score(importance=0, frequency=0)
    assert only_recency(high + low, T0, 2) == ["a", "b"]  # equal scores: by id
    with pytest.raises(PolicyError):
        sel.make_score(recency=-1)


def _read(s: ItemStats, *seconds: int) -> ItemStats:
    """`s` read at T0 + each of `seconds` (in order), as the tiers record a get."""
    for sec in seconds:
        t = T0 + timedelta(seconds=sec)
        s = _replace(
            s,
            last_accessed_at=t,
            access_count=s.access_count + 1,
            recent_hits=(*s.recent_hits, t)[-HITS_KEPT:],
        )
    return s


def _new(id_: str, at: int) -> ItemStats:
    t = T0 + timedelta(seconds=at)
    return ItemStats(id_, "n", "episodic", t, t, t, 0)


def test_hyperbolic_evicts_an_old_one_hit_memory_before_a_hot_one() -> None:
    day = 86_400
    old = _read(_new("old", 0), 60)  # read once, a month ago
    hot = _read(_new("hot", 20 * day), *range(20 * day + 600, 30 * day, 6 * 3600))  # every 6h
    now = T0 + timedelta(days=30)
    assert sel.hyperbolic([hot, old], now, 1) == ["old"]
    assert sel.lru([hot, old], now, 1) == ["old"]
    fresh = _new("fresh", 30 * day - 60)  # unread, a minute old
    # rates: old 1.01 / 30 days, fresh 0.01 / 60 s, hot ~ 1 / 6 h: old, then hot, then fresh
    assert sel.hyperbolic([hot, old, fresh], now, 3) == ["old", "hot", "fresh"]


def test_hyperbolic_evicts_a_finished_burst_before_a_new_memory() -> None:
    """A chat read 8 times a minute apart, then silent: over after ~19 min (g = 7)."""
    chat = _read(_new("chat", 0), *range(60, 481, 60))  # reads at 1..8 min
    fresh = _new("fresh", 480 + 19 * 60)  # a minute old at `late`
    early, late = T0 + timedelta(seconds=480 + 18 * 60), T0 + timedelta(seconds=480 + 20 * 60)
    assert sel.hyperbolic([chat, _new("fresh", 480 + 17 * 60)], early, 1) == ["fresh"]
    assert sel.hyperbolic([chat, fresh], late, 1) == ["chat"]
    assert sel.lfu([chat, fresh], late, 1) == ["fresh"]  # lifetime counts keep the dead chat


def test_hyperbolic_steady_reader_is_not_taken_for_over() -> None:
    """Reads an hour apart, silent for 3 hours: rate decides, not the burst rule."""
    steady = _read(_new("steady", 0), *range(3600, 8 * 3600 + 1, 3600))
    now = T0 + timedelta(hours=11)
    one = _read(_new("one", 0), 10)  # read once, 10 s after it entered
    assert sel.hyperbolic([steady, one], now, 2) == ["one", "steady"]


def test_hyperbolic_unread_go_oldest_first_and_no_span_is_no_evidence() -> None:
    unread = [_new(k, at) for k, at in (("b", 50), ("a", 100), ("c", 10))]
    now = T0 + timedelta(seconds=200)
    assert sel.hyperbolic(unread, now, 3) == ["c", "b", "a"]
    # Promoted back after its reads elsewhere: last access before inserted_at, no kept
    # hit times. No gap to judge by, so never "over", however long the silence.
    back = replace(_new("back", 0), access_count=5, inserted_at=T0 + timedelta(days=9))
    later = T0 + timedelta(days=10)
    assert sel.hyperbolic([back, _new("x", 9 * 86_400)], later, 1) == ["x"]


def test_make_hyperbolic_checks_its_constants() -> None:
    for bad in ({"prior": 0}, {"silence": 1}, {"silence": 0}, {"prior": -1}):
        with pytest.raises(PolicyError):
            sel.make_hyperbolic(**bad)
    stats = [_read(_new("a", 0), 10), _new("b", 90)]
    now = T0 + timedelta(seconds=100)
    # rates: a 1.01/100, b 0.01/10 (default) or 5/10 with a prior of 5 reads
    assert sel.hyperbolic(stats, now, 1) == ["b"]
    assert sel.make_hyperbolic(prior=5)(stats, now, 1) == ["a"]


# -- combine and resolve ------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(trace=events, pinned=pins, ttl=ttls, n=st.integers(0, 12))
def test_combine_ttl_then_lru(
    trace: list[Event], pinned: frozenset[str], ttl: list[int | None], n: int
) -> None:
    r = replay(trace, pinned, ttl=ttl)
    got = sel.combine(["ttl", "lru"], items(r), r.now, n)
    expired = ref_ttl(r, n)
    rest = [k for k in ref_lru(r, len(KEYS)) if k not in expired]
    assert got == (expired + rest)[:n]
    assert len(got) == len(set(got))
    assert sel.combine(["lru", "ttl"], items(r), r.now, n) == ref_lru(r, n)


def test_combine_drops_bad_answers_of_custom_selectors() -> None:
    stats = _same_time(["a", "b"]) + _same_time(["p"], pinned=True)

    def rogue(items: object, now: datetime, n: int) -> list[str]:
        return ["p", "zzz", "b", "b", "a"]

    assert sel.combine([rogue], stats, T0, 5) == ["b", "a"]
    assert sel.combine(rogue, stats, T0, 1) == ["b"]
    assert sel.combine("fifo", stats, T0, 5) == ["a", "b"]


CUSTOM = """
    def newest_first(items, now, n):
        return [s.id for s in sorted(items, key=lambda s: s.inserted_at, reverse=True)][:n]

    not_a_function = 42
"""


def test_custom_selector_by_dotted_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_selectors_mod.py").write_text(textwrap.dedent(CUSTOM))
    monkeypatch.syspath_prepend(str(tmp_path))
    r = replay([("put", 0, 1), ("put", 1, 1), ("put", 2, 1)], ttl=[-1, None, None])
    custom = sel.resolve("my_selectors_mod:newest_first")
    assert custom(items(r), r.now, 2) == ["k02", "k01"]
    assert sel.combine(["ttl", "my_selectors_mod:newest_first"], items(r), r.now, 2) == [
        "k00",
        "k02",
    ]
    for bad, message in [
        ("my_selectors_mod:missing", "has no 'missing'"),
        ("my_selectors_mod:not_a_function", "not callable"),
        ("no_such_module_xyz:f", "cannot import"),
        ("lruu", "unknown selector"),
        ("my_selectors_mod.newest_first", "package.module:function"),
        (":f", "unknown selector"),
    ]:
        with pytest.raises(PolicyError, match=message):
            sel.resolve(bad)


def test_builtins_resolve_to_themselves() -> None:
    for name, fn in sel.SELECTORS.items():
        assert sel.resolve(name) is fn


def test_large_snapshot_is_fast() -> None:
    """100k items per pass: sorting only (a quadratic selector would time out)."""
    rng = random.Random(0)
    stats = [
        ItemStats(
            id=f"m{i}",
            namespace="n",
            kind="k",
            created_at=T0,
            inserted_at=T0 + timedelta(seconds=i),
            last_accessed_at=T0 + timedelta(seconds=i + rng.randrange(10_000)),
            access_count=rng.randrange(50),
            recent_hits=(T0 + timedelta(seconds=i + 1),) * rng.randrange(4),
        )
        for i in range(100_000)
    ]
    for name, fn in sel.SELECTORS.items():
        assert len(fn(stats, T0 + timedelta(days=2), 1000)) == (0 if name == "ttl" else 1000)


def test_an_eviction_pass_ages_sieve_and_s3fifo_hits() -> None:
    """Hits before `passed_at` no longer count: the pass cleared the bits/counters."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    old_hit = ItemStats(
        "old", "ns", "episodic", t0, t0, t0 + timedelta(seconds=5), 1, (t0 + timedelta(seconds=5),)
    )
    new = ItemStats(
        "new",
        "ns",
        "episodic",
        t0 + timedelta(seconds=8),
        t0 + timedelta(seconds=8),
        t0 + timedelta(seconds=8),
        0,
    )
    now = t0 + timedelta(seconds=10)
    assert sel.sieve([old_hit, new], now, 1) == ["new"]  # the old hit still protects it
    passed = replace(old_hit, passed_at=t0 + timedelta(seconds=6))
    assert sel.hits_since_insert(passed) == 0
    assert sel.sieve([passed, replace(new, passed_at=t0 + timedelta(seconds=6))], now, 1) == ["old"]
