"""Eviction selectors: pure functions that pick victims from a stats snapshot.

A selector is ``(items, now, n) -> ids``: up to ``n`` victim ids from
``items``, best victim first. It never returns a pinned item, reads nothing
but its arguments (the clock is ``now``), and breaks every tie by id, so the
same snapshot always gives the same answer. Deleting the victims is the
tier's job, applying the plan the executor's (STYLE.md, points 2-4).

Policies name selectors in ``evict: [ttl, lru]`` (POLICY.md): `combine`
runs them in order, each filling what the previous ones left, and `resolve`
maps a name to a built-in from `SELECTORS` or imports a custom one given as
``package.module:function``.

SIEVE and S3-FIFO are stateful algorithms over an access stream (a hand
position, visited bits, queues, frequency counters that decay as the hand
passes). A snapshot has none of that state, so both are *batch adaptations*:
each pass recomputes the state from `ItemStats` as if the queues had been
built from ``inserted_at`` and the bits from the hits since then. Their
docstrings give the exact rules; the benchmark ``benchmarks/hitratio.py``
measures what the approximation costs.

`hyperbolic` ranks by an estimated read rate (reads per second of life)
with a prior for unread memories, and evicts first memories whose burst of
reads has visibly ended. In ``benchmarks/results/hitratio.md`` it is above
lfu and score on the Zipf traces and within 0.2% of lru on the chat trace;
lru stays ahead when a chat cache is tighter than its live conversations
(a new, still unread memory is worth little to it).

All selectors sort (O(m log m) for m items); none is quadratic.
"""

from __future__ import annotations

import importlib
import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from tiermem.errors import PolicyError
from tiermem.lifecycle.stats import ItemStats

__all__ = [
    "SELECTORS",
    "Selector",
    "combine",
    "fifo",
    "hits_since_insert",
    "hyperbolic",
    "lfu",
    "lru",
    "make_hyperbolic",
    "make_score",
    "resolve",
    "s3fifo",
    "score",
    "sieve",
    "ttl",
]

Selector = Callable[[Sequence[ItemStats], datetime, int], list[str]]
"""``(items, now, n) -> up to n victim ids, best victim first``."""

SMALL_FRACTION = 0.1  # S3-FIFO's small queue: 10% of the queue (paper, section 4.1)
FREQ_CAP = 3  # S3-FIFO's two-bit counter
PROMOTE_AT = 2  # S3-FIFO: leave S for M with freq >= 2 (libCacheSim move_to_main_threshold)
PRIOR_READS = 0.01  # hyperbolic: what an unread memory is worth, in reads
SILENCE = 1e-4  # hyperbolic: a silence this improbable means the burst is over


def _eligible(items: Iterable[ItemStats]) -> list[ItemStats]:
    return [s for s in items if not s.pinned]


def _ids(ranked: Iterable[ItemStats], n: int) -> list[str]:
    out: list[str] = []
    if n <= 0:
        return out
    for s in ranked:
        out.append(s.id)
        if len(out) == n:
            break
    return out


def hits_since_insert(s: ItemStats, cap: int = FREQ_CAP) -> int:
    """Accesses since `s` entered its tier or was last passed by an eviction pass, capped.

    An eviction pass clears SIEVE's visited bits and S3-FIFO's counters:
    hits before ``passed_at`` no longer count (ageing between passes).

    Counts ``recent_hits`` later than ``inserted_at``; when none are kept
    (the tracking window dropped them) but ``last_accessed_at`` is later than
    ``inserted_at``, that is one hit. ``access_count`` is not used: it counts
    the memory's whole life, including accesses in other tiers.
    """
    since = max(s.inserted_at, s.passed_at) if s.passed_at is not None else s.inserted_at
    hits = len(s.recent_hits) - bisect_right(s.recent_hits, since)
    if hits == 0 and s.last_accessed_at > since:
        hits = 1
    return min(hits, cap)


# -- the classic orders -------------------------------------------------------------


def ttl(items: Sequence[ItemStats], now: datetime, n: int) -> list[str]:
    """Expired items only (``expires_at <= now``), earliest expiry first.

    May return fewer than `n`: an unexpired item is never a ttl victim.
    """
    expired = [s for s in _eligible(items) if s.expires_at is not None and s.expires_at <= now]
    expired.sort(key=lambda s: (s.expires_at, s.id))
    return _ids(expired, n)


def lru(items: Sequence[ItemStats], now: datetime, n: int) -> list[str]:
    """Least recently accessed first (oldest ``last_accessed_at``)."""
    return _ids(sorted(_eligible(items), key=lambda s: (s.last_accessed_at, s.id)), n)


def lfu(items: Sequence[ItemStats], now: datetime, n: int) -> list[str]:
    """Lowest ``access_count`` first; ties: least recently accessed first."""
    ranked = sorted(_eligible(items), key=lambda s: (s.access_count, s.last_accessed_at, s.id))
    return _ids(ranked, n)


def fifo(items: Sequence[ItemStats], now: datetime, n: int) -> list[str]:
    """First in, first out: oldest ``inserted_at`` (entry into this tier) first."""
    return _ids(sorted(_eligible(items), key=lambda s: (s.inserted_at, s.id)), n)


# -- score (Generative Agents) ------------------------------------------------------


SCORE_DOC = """Lowest Generative-Agents-style score first; ties: least recently accessed.

score = (recency + importance + frequency) / 3, an equal-weight *sum* as in
Park et al. 2023 (their retrieval score sums its components), where
  recency    = 0.995 ** hours since ``last_accessed_at`` (1 = just now),
  importance = ``importance`` clamped to [0, 1],
  frequency  = log1p(access_count) / log1p(max access_count among the
               unpinned items), 0 for all when none was ever accessed.
A sum rather than the product: one zero factor (a memory never read yet,
so frequency 0) would make a product 0 whatever its importance and recency,
and new memories would always go first. `make_score` changes the weights.
"""


def make_score(
    *, recency: float = 1.0, importance: float = 1.0, frequency: float = 1.0, decay: float = 0.995
) -> Selector:
    """A `score` selector with other weights or another hourly recency decay."""
    total = recency + importance + frequency
    if min(recency, importance, frequency) < 0 or total <= 0 or not 0 < decay <= 1:
        raise PolicyError("score: weights must be >= 0 with a positive sum, 0 < decay <= 1")
    w_r, w_i, w_f = recency / total, importance / total, frequency / total
    per_second = math.log(decay) / 3600  # decay ** hours == exp(per_second * seconds)

    def select(items: Sequence[ItemStats], now: datetime, n: int) -> list[str]:
        eligible = _eligible(items)
        top = max((s.access_count for s in eligible), default=0)
        norm = math.log1p(top) if top > 0 else 1.0  # nobody accessed: every frequency is 0
        exp, log1p = math.exp, math.log1p

        def key(s: ItemStats) -> tuple[float, datetime, str]:
            r = exp(per_second * max(0.0, (now - s.last_accessed_at).total_seconds()))
            i = min(1.0, max(0.0, s.importance))
            f = log1p(max(0, s.access_count)) / norm
            return (w_r * r + w_i * i + w_f * f, s.last_accessed_at, s.id)

        return _ids(sorted(eligible, key=key), n)

    select.__name__ = select.__qualname__ = "score"
    select.__doc__ = SCORE_DOC
    return select


score = make_score()


# -- SIEVE and S3-FIFO, batch adaptations -------------------------------------------


def sieve(items: Sequence[ItemStats], now: datetime, n: int) -> list[str]:
    """SIEVE (Zhang et al., NSDI 2024) as one batch pass over the snapshot.

    SIEVE keeps a FIFO queue and one visited bit per object (set on a hit); the
    hand moves from the tail (oldest) towards the head, clearing visited bits
    and evicting the first unvisited object, and wraps around at the head.
    Batch rule:

    - queue order: ``inserted_at`` (ties: id), the hand starts at the tail;
    - visited: accessed since it entered the tier
      (``hits_since_insert(item) >= 1``, i.e. ``last_accessed_at > inserted_at``);
    - first sweep, oldest first: unvisited items are victims, visited ones
      are skipped (their bits cleared);
    - if more are needed the hand wraps; every bit is now clear, so the
      second sweep takes the remaining (visited) items oldest first.

    So: victims = unvisited by ``inserted_at``, then visited by ``inserted_at``.
    Not modelled: the hand's position between passes and bits cleared by an
    earlier pass (a snapshot has neither), so an item hit once stays
    "visited" until a pass runs out of unvisited items.
    """
    ranked = sorted(_eligible(items), key=lambda s: (hits_since_insert(s, 1), s.inserted_at, s.id))
    return _ids(ranked, n)


def s3fifo(items: Sequence[ItemStats], now: datetime, n: int) -> list[str]:
    """S3-FIFO (Yang et al., SOSP 2023) as one batch pass over the snapshot.

    The paper's cache is a small FIFO S (10% of the space), a main FIFO M
    (90%, a two-bit CLOCK) and a ghost queue G of keys. Batch rule, over the
    unpinned items:

    - queue order: ``inserted_at`` (ties: id); S = the newest
      ceil(10% of them), M = the rest;
    - freq = ``hits_since_insert(item)``: hits since it entered the tier,
      capped at 3 (the two-bit counter);
    - S first, oldest first (the tier is over capacity because of recent
      inserts, and each insert is followed by an S eviction): freq < 2 is a
      victim; freq >= 2 moves to the head of M with freq reset to 0 (paper
      Alg. 1 "freq > 1"; libCacheSim ``move_to_main_threshold = 2``, bits
      cleared on the move);
    - then M, run as the paper's loop without new hits: the tail is evicted
      if freq == 0, else reinserted at the head with freq - 1. That loop
      evicts in order of (freq, queue position), so: key (freq, inserted_at)
      with promoted items at freq 0 behind M's own items (they are newer).

    Victims = S items with freq < 2 by ``inserted_at``, then M and promoted
    items by (freq, ``inserted_at``). Not modelled: the ghost queue G (it
    decides where a *returning* key is inserted, which is the tier's insert
    path, not a victim choice), and M's decrements from earlier passes (freq
    counts all hits since insertion, so it only decays by this pass's loop).
    """
    ranked = sorted(_eligible(items), key=lambda s: (s.inserted_at, s.id))
    split = len(ranked) - math.ceil(len(ranked) * SMALL_FRACTION)
    main, small = ranked[:split], ranked[split:]
    freq = {s.id: hits_since_insert(s) for s in ranked}
    out = _ids((s for s in small if freq[s.id] < PROMOTE_AT), n)
    if len(out) < n:
        promoted = [s for s in small if freq[s.id] >= PROMOTE_AT]
        for s in promoted:
            freq[s.id] = 0
        # Stable sort on freq alone keeps queue order within a frequency.
        queue = sorted(main + promoted, key=lambda s: freq[s.id])
        out.extend(_ids(queue, n - len(out)))
    return out


# -- hyperbolic (read rate, with the end of bursts) ---------------------------------


HYPERBOLIC_DOC = """Lowest estimated read rate first, after memories whose burst of reads is over.

Two classes, each item in exactly one; class 1 is evicted before class 2:

1. burst over: the item's silence is improbable for the rate its own reads
   show. The gaps: the ``g = len(recent_hits) - 1`` gaps between its kept
   hit times, spanning ``span = recent_hits[-1] - recent_hits[0]``; with
   fewer than 2 kept hits and ``access_count >= 1``, the one gap
   ``span = last_accessed_at - inserted_at`` (g = 1). With
   ``idle = now - last_accessed_at``, the item is in class 1 when
   ``span > 0``, ``idle > 0`` and ``(1 + idle / span) ** -g < silence``,
   i.e. ``g * log1p(idle / span) > log(1 / silence)``. (1 + idle/span)^-g
   is the chance of no read for `idle` under a Poisson rate fitted to those
   g gaps (Gamma(g, span) posterior, the predictive probability of
   silence). Class 1 goes least recently accessed first.
2. the rest, lowest ``rate = (access_count + prior) / age`` first, with
   ``age = now - created_at`` in seconds (``rate`` is infinite when
   ``age <= 0``): reads per second over the memory's life, as in
   hyperbolic caching (Blankstein et al., USENIX ATC 2017: priority
   n / time in cache). `prior` (in reads) values an unread memory: it
   stays while ``prior / age`` beats the weakest read one, i.e. for `prior`
   times the mean interval between that one's reads, then goes oldest
   first.

Ties: least recently accessed, then id. Defaults: prior = 0.01,
silence = 1e-4: a steady (Poisson) reader is taken for over once in 10^4
silences, while a memory read 8 times a minute apart is over after 19
minutes without a read (g = 7); with 2 reads (g = 1) it takes 10^4 times
their gap. So it acts as a frequency rule under steady popularity
and as a recency rule when reads come in bursts (measured in
``benchmarks/results/hitratio.md``). `make_hyperbolic` changes the two
constants. O(m log m): one key per item (O(1) each), one sort.
"""


def make_hyperbolic(*, prior: float = PRIOR_READS, silence: float = SILENCE) -> Selector:
    """A `hyperbolic` selector with another prior (reads) or silence probability."""
    if not prior > 0 or not 0 < silence < 1:
        raise PolicyError("hyperbolic: prior must be > 0 and 0 < silence < 1")
    threshold = math.log(1 / silence)
    log1p, inf = math.log1p, math.inf

    def key(s: ItemStats, now: datetime) -> tuple[int, float, datetime, str]:
        hits = s.recent_hits
        if len(hits) >= 2:
            gaps, span = len(hits) - 1, (hits[-1] - hits[0]).total_seconds()
        elif s.access_count > 0:
            gaps, span = 1, (s.last_accessed_at - s.inserted_at).total_seconds()
        else:
            gaps, span = 0, 0.0
        idle = (now - s.last_accessed_at).total_seconds()
        if span > 0 and idle > 0 and gaps * log1p(idle / span) > threshold:
            return (1, 0.0, s.last_accessed_at, s.id)
        age = (now - s.created_at).total_seconds()
        rate = (max(0, s.access_count) + prior) / age if age > 0 else inf
        return (2, rate, s.last_accessed_at, s.id)

    def select(items: Sequence[ItemStats], now: datetime, n: int) -> list[str]:
        return _ids(sorted(_eligible(items), key=lambda s: key(s, now)), n)

    select.__name__ = select.__qualname__ = "hyperbolic"
    select.__doc__ = HYPERBOLIC_DOC
    return select


hyperbolic = make_hyperbolic()


# -- registry, combination, resolution ----------------------------------------------

SELECTORS: dict[str, Selector] = {
    "ttl": ttl,
    "lru": lru,
    "lfu": lfu,
    "fifo": fifo,
    "score": score,
    "sieve": sieve,
    "s3fifo": s3fifo,
    "hyperbolic": hyperbolic,
}


def resolve(name: str) -> Selector:
    """The built-in selector `name`, or ``package.module:function`` imported.

    Raises `PolicyError` naming what is wrong (unknown name, module not
    importable, attribute missing or not callable).
    """
    if name in SELECTORS:
        return SELECTORS[name]
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        known = ", ".join(SELECTORS)
        raise PolicyError(
            f"unknown selector {name!r}: use one of {known} "
            "or a dotted path 'package.module:function'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PolicyError(f"selector {name!r}: cannot import {module_name!r}: {exc}") from exc
    obj = getattr(module, attr, None)
    if obj is None:
        raise PolicyError(f"selector {name!r}: module {module_name!r} has no {attr!r}")
    if not callable(obj):
        raise PolicyError(f"selector {name!r}: {attr!r} is not callable")
    selector: Selector = obj
    return selector


def combine(
    selectors: str | Selector | Sequence[str | Selector],
    items: Sequence[ItemStats],
    now: datetime,
    n: int,
) -> list[str]:
    """Run `selectors` in order: each picks from what the ones before left.

    ``combine(["ttl", "lru"], ...)`` takes every expired item (up to `n`),
    then fills the rest least recently used first. Names go through
    `resolve`. What a selector returns is checked, since custom ones are
    user code: pinned, unknown and already chosen ids are dropped, and no
    selector gets more than the remaining count.
    """
    if isinstance(selectors, str) or callable(selectors):
        selectors = [selectors]
    chosen: list[str] = []
    taken: set[str] = set()
    by_id = {s.id: s for s in items}
    for entry in selectors:
        if len(chosen) >= n:
            break
        select = resolve(entry) if isinstance(entry, str) else entry
        rest = [s for s in items if s.id not in taken]
        for id_ in select(rest, now, n - len(chosen)):
            s = by_id.get(id_)
            if s is None or s.pinned or id_ in taken:
                continue
            chosen.append(id_)
            taken.add(id_)
            if len(chosen) == n:
                break
    return chosen
