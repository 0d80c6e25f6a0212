"""Fault injection: SIGKILL a writer at every step of a move, reopen, count.

A child process adds memories (the ids it was acknowledged are written to
a file first), then moves them with TIERMEM_FAILPOINT set; the failpoint
kills it with SIGKILL. The parent reopens the store: every acknowledged
memory must be present exactly once, intact, with no journal left over.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import tiermem
from tests.conftest import DIM, OpenStore, run_until_killed
from tiermem.failpoints import STEPS
from tiermem.journal import Journal

CHILD = textwrap.dedent(
    """
    import json, sys, tiermem
    path, url, prefix, src, dst, n = sys.argv[1:7]
    mem = tiermem.open(path, embedder=tiermem.HashingEmbedder({dim}),
                       **{{"l1.url": url, "l1.prefix": prefix, "embedding.dim": {dim},
                          "moves.batch": 10, "moves.cold_batch": 10}})
    items = [{{"text": f"memory number {{i}}"}} for i in range(int(n))]
    res = mem.add_many(items, namespace="crash")
    ids = [i for i in res.ids if i]
    if src != "l1":
        mem.mover.move("l1", src, ids)
    with open(path + "/acked.json", "w") as fh:
        json.dump(ids, fh)
    import os
    os.environ["TIERMEM_FAILPOINT"] = sys.argv[7]
    mem.mover.move(src, dst, ids)
    print("finished without crashing", flush=True)
    """
).format(dim=DIM)

MOVES = [("l1", "l2"), ("l2", "l3"), ("l1", "l3"), ("l3", "l1"), ("l2", "l1"), ("l3", "l2")]
POINTS = [*STEPS, "move.copied:2"]  # the last one dies mid-batch, after one batch moved


@pytest.mark.slow
@pytest.mark.parametrize(("src", "dst"), MOVES, ids=[f"{s}-{d}" for s, d in MOVES])
@pytest.mark.parametrize("point", POINTS)
def test_kill_during_move_loses_nothing(
    tmp_path: Path,
    redis_url: str,
    prefix: str,
    open_store: OpenStore,
    src: str,
    dst: str,
    point: str,
) -> None:
    path = tmp_path / "store"
    path.mkdir()
    run_until_killed(CHILD, str(path), redis_url, prefix, src, dst, "25", point)
    acked = json.loads((path / "acked.json").read_text())
    assert len(acked) == 25

    mem = open_store(path)
    seen = [(m.id, m.tier, m.text) for m in mem.scan(namespace="crash")]
    ids = [s[0] for s in seen]
    assert sorted(ids) == sorted(acked), "lost or duplicated memories"
    assert {s[1] for s in seen} <= {src, dst}
    assert all(text.startswith("memory number") for _, _, text in seen)
    assert not Journal(path / "moves").pending(), "journal not cleared by recovery"
    # the store stays usable: finish the move by running it again (idempotent)
    mem.mover.move(src, dst, acked)
    assert {m.tier for m in mem.scan(namespace="crash")} == {dst}
    assert len(list(mem.scan(namespace="crash"))) == 25


def test_failpoint_unset_is_inert(store: tiermem.Engine) -> None:
    m = store.add("x", namespace="a")
    assert store.demote(m.id, to="l3").tier == "l3"


READ_THROUGH_CHILD = textwrap.dedent(
    """
    import json, os, sys, tiermem
    path, url, prefix, point = sys.argv[1:5]
    policy = path + "/policy.yaml"
    with open(policy, "w") as fh:
        fh.write("version: 1\\nkinds:\\n  episodic:\\n"
                 "    l1: {{capacity: 30, evict: [lru], on_full: evict}}\\n"
                 "    promote: {{on_read: 1}}\\n")
    mem = tiermem.open(path, policy=policy, embedder=tiermem.HashingEmbedder({dim}),
                       **{{"l1.url": url, "l1.prefix": prefix, "embedding.dim": {dim},
                          "moves.batch": 10}})
    warm = mem.add_many([{{"text": f"memory number {{i}}"}} for i in range(25)],
                        namespace="crash").ids
    mem.mover.move("l1", "l2", warm)
    hot = mem.add_many([{{"text": f"memory number {{i}}"}} for i in range(25, 45)],
                       namespace="crash").ids
    with open(path + "/acked.json", "w") as fh:
        json.dump(warm + hot, fh)
    os.environ["TIERMEM_FAILPOINT"] = point
    mem.get_many(warm)  # reads 25 from L2: each comes up, and L1 (45 > 30) evicts
    print("finished without crashing", flush=True)
    """
).format(dim=DIM)

# the promotion moves 25 in batches of 10 (move.*:1-3); the eviction after it is move 4
READ_THROUGH_POINTS = [*STEPS, "move.copied:2", "move.copied:4", "move.deleted:4"]


@pytest.mark.slow
@pytest.mark.parametrize("point", READ_THROUGH_POINTS)
def test_kill_during_read_through_loses_nothing(
    tmp_path: Path, redis_url: str, prefix: str, open_store: OpenStore, point: str
) -> None:
    """A get that promotes (promote.on_read) and then evicts is killed at each step."""
    path = tmp_path / "store"
    path.mkdir()
    run_until_killed(READ_THROUGH_CHILD, str(path), redis_url, prefix, point)
    acked = json.loads((path / "acked.json").read_text())
    assert len(acked) == 45

    mem = open_store(path, policy=str(path / "policy.yaml"))
    seen = [(m.id, m.tier, m.text) for m in mem.scan(namespace="crash")]
    assert sorted(s[0] for s in seen) == sorted(acked), "lost or duplicated memories"
    assert {s[1] for s in seen} <= {"l1", "l2"}
    assert all(text.startswith("memory number") for _, _, text in seen)
    assert not Journal(path / "moves").pending(), "journal not cleared by recovery"
    got = mem.get_many(acked)  # still usable: every memory reads back
    assert sorted(got) == sorted(acked)
