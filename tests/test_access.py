"""The HitLog (recent hits of L2/L3 memories) against a reference model."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiermem.access import KEPT, HitLog

IDS = st.sampled_from(["a", "b", "c", "d"])
CALLS = st.lists(
    st.tuples(st.lists(IDS, max_size=6), st.integers(0, 2**40), st.booleans()), max_size=60
)


@settings(max_examples=60, deadline=None)
@given(calls=CALLS)
def test_hit_log_keeps_the_last_hits_of_each_id_across_save_and_reload(
    tmp_path_factory: pytest.TempPathFactory, calls: list[tuple[list[str], int, bool]]
) -> None:
    path = tmp_path_factory.mktemp("hits") / "hits.arrow"
    log = HitLog(path)
    model: dict[str, deque[int]] = {}
    for ids, at, drop in calls:
        if drop:  # a promotion or delete forgets the ids' hits
            log.drop(ids)
            for i in ids:
                model.pop(i, None)
            continue
        log.record(ids, at)
        for i in ids:
            model.setdefault(i, deque(maxlen=KEPT)).append(at)
    want = {i: list(h) for i, h in model.items()}
    assert log.get(["a", "b", "c", "d", "zz"]) == want
    assert sorted(log.ids()) == sorted(want)
    log.save()
    assert HitLog(path).get(["a", "b", "c", "d"]) == want


def test_a_returned_list_is_a_copy(tmp_path: Path) -> None:
    log = HitLog(None)
    log.record(["a"], 1)
    log.get(["a"])["a"].append(99)
    assert log.get(["a"]) == {"a": [1]}


def test_only_the_last_kept_hits_stay() -> None:
    log = HitLog(None)
    for at in range(3 * KEPT):
        log.record(["a", "a"] if at % 2 else ["a"], at)
    got = log.get(["a"])["a"]
    assert len(got) == KEPT and got[-1] == 3 * KEPT - 1 and got == sorted(got)
