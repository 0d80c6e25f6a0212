"""Consolidation: clustering, idempotence, growth, summarizers, and crashes mid-run."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tiermem
from tests.conftest import DIM, OpenStore, run_until_killed
from tiermem.consolidate import CallableSummarizer, ExtractiveSummarizer, span_note
from tiermem.failpoints import CONSOLIDATE_STEPS
from tiermem.journal import Journal

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, eps: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    noise -= (noise @ v) * v
    w = v + eps * noise / np.linalg.norm(noise)
    return w / np.linalg.norm(w)


def add(mem: tiermem.Engine, text: str, vec: np.ndarray, hours_ago: float, **kw: object) -> str:
    at = mem.clock() - timedelta(hours=hours_ago)
    return mem.add(text, namespace="c", embedding=vec, created_at=at, **kw).id  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mem(open_store: OpenStore, clock: FakeClock) -> tiermem.Engine:
    return open_store(clock=clock)


def seed_store(mem: tiermem.Engine) -> dict[str, list[str]]:
    """Two clusters (4 + 3), a pair (below min_cluster), unrelated and young episodes."""
    a, b, c = unit(1), unit(2), unit(3)
    out: dict[str, list[str]] = {"a": [], "b": [], "pair": [], "other": [], "young": []}
    for i in range(4):
        out["a"].append(add(mem, f"coffee with Ann at the cafe {i}", near(a, 0.15, 10 + i), 10 - i,
                            importance=0.2 + 0.1 * i))  # fmt: skip
    for i in range(3):
        out["b"].append(add(mem, f"ran 5k in the park {i}", near(b, 0.15, 20 + i), 5 + i))
    for i in range(2):
        out["pair"].append(add(mem, f"dentist {i}", near(c, 0.15, 30 + i), 3))
    for i in range(3):
        out["other"].append(add(mem, f"unrelated {i}", unit(40 + i), 4))
    for i in range(2):
        out["young"].append(add(mem, f"coffee again {i}", near(a, 0.15, 50 + i), 0.1))
    return out


def semantic(mem: tiermem.Engine) -> list[tiermem.Memory]:
    return sorted(mem.scan(namespace="c", kinds=["semantic"]), key=lambda m: len(m.source_ids))


def test_plan_and_run_cluster_exactly_the_old_similar_episodes(mem: tiermem.Engine) -> None:
    ids = seed_store(mem)
    plan = mem.plan("consolidate")
    assert {a.id for a in plan.actions} == set(ids["a"] + ids["b"])
    assert all(a.action == "merge" and a.dst == "l3" for a in plan.actions)
    reason = next(a.reason for a in plan.actions if a.id == ids["a"][0])
    assert reason.startswith("cluster of 4 episodes, min similarity 0.") and ">= 0.85" in reason
    assert mem.stats().count == 14  # a plan changes nothing

    report = mem.run("consolidate")
    assert (report.merged, report.moved, report.errors) == (7, 7, [])
    sb, sa = semantic(mem)
    assert set(sa.source_ids) == set(ids["a"]) and set(sb.source_ids) == set(ids["b"])
    assert sa.kind == "semantic" and sa.tier == "l1" and sa.version == 1
    assert sa.importance == pytest.approx(0.5)  # the max of the sources
    assert "(from 4 episodes, 2026-02-28)" in sa.text and "coffee with Ann" in sa.text
    vecs = np.stack([m.embedding for m in mem.get_many(ids["a"]).values()])
    mean = vecs.mean(axis=0)
    assert np.allclose(sa.embedding, mean / np.linalg.norm(mean), atol=1e-5)
    for i in ids["a"] + ids["b"]:
        m = mem.get(i)
        assert m.tier == "l3" and m.metadata["consolidated_into"] in (sa.id, sb.id)
    for i in ids["pair"] + ids["other"] + ids["young"]:
        m = mem.get(i)
        assert m.tier == "l1" and "consolidated_into" not in m.metadata
    events = mem.sql("SELECT count(*) AS n FROM events WHERE job = 'consolidate'").to_pylist()
    assert events == [{"n": 7}]


def test_rerun_is_idempotent(mem: tiermem.Engine) -> None:
    seed_store(mem)
    mem.run("consolidate")
    before = {m.id: m.version for m in mem.scan(namespace="c")}
    assert mem.plan("consolidate").actions == []
    report = mem.run("consolidate")
    assert (report.merged, report.moved) == (0, 0)
    assert {m.id: m.version for m in mem.scan(namespace="c")} == before


def test_new_episodes_grow_the_existing_memory(mem: tiermem.Engine, clock: FakeClock) -> None:
    ids = seed_store(mem)
    mem.run("consolidate")
    _, sa = semantic(mem)
    clock.now += timedelta(hours=2)  # the young ones are old enough now
    late = add(mem, "coffee with Ann once more", near(unit(1), 0.15, 60), 1.5)
    plan = mem.plan("consolidate")
    assert {a.id for a in plan.actions} == {*ids["young"], late}
    assert all(f"joins consolidated memory {sa.id}" in a.reason for a in plan.actions)
    report = mem.run("consolidate")
    assert report.merged == 3
    got = mem.get(sa.id)
    assert got.version == 2 and set(got.source_ids) == {*ids["a"], *ids["young"], late}
    assert "(from 7 episodes" in got.text
    assert len(semantic(mem)) == 2  # grown, not a new one
    assert mem.get(late).metadata["consolidated_into"] == sa.id


def test_disabled_policy_and_pinned_episodes(open_store: OpenStore, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nkinds:\n  episodic:\n    consolidate: null\n")
    off = open_store(policy=str(policy), clock=FakeClock())
    seed_store(off)
    plan = off.plan("consolidate")
    assert plan.actions == [] and "off" in plan.notes[0]
    off.forget(namespace="c")  # the next store shares the test's Redis prefix
    off.close()
    mem = open_store(tmp_path / "other", clock=FakeClock())
    vs = [add(mem, f"e{i}", near(unit(1), 0.1, 100 + i), 5, pinned=i == 0) for i in range(4)]
    assert {a.id for a in mem.plan("consolidate").actions} == set(vs[1:])


def test_sources_already_in_sources_to_are_marked_in_place(
    open_store: OpenStore, tmp_path: Path
) -> None:
    """With ``sources_to: l1`` nothing moves: step (b) marks the sources where they
    are (the moving ones are marked on the way instead), and a re-run is a no-op."""
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nkinds:\n  episodic:\n    consolidate: {sources_to: l1}\n")
    mem = open_store(policy=str(policy), clock=FakeClock())
    ids = seed_store(mem)
    report = mem.run("consolidate")
    assert (report.merged, report.moved, report.errors) == (7, 0, [])
    for cluster in ("a", "b"):
        got = [mem.get(i) for i in ids[cluster]]
        assert {m.tier for m in got} == {"l1"} and all(m.version == 1 for m in got)
        into = {m.metadata["consolidated_into"] for m in got}
        assert len(into) == 1 and set(mem.get(into.pop()).source_ids) == set(ids[cluster])
    again = mem.run("consolidate")
    assert (again.merged, again.moved) == (0, 0) and len(semantic(mem)) == 2


# -- the vectorised helpers, against the plain loops they replaced ----------------------------


def _union_find(members: list[int], edges: list[tuple[int, int]]) -> list[list[int]]:
    parent = {i: i for i in members}

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in edges:
        if a in parent and b in parent:
            ra, rb = find(a), find(b)
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in members:
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


@given(
    n=st.integers(1, 40),
    pairs=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39)), max_size=80),
    drop=st.sets(st.integers(0, 39)),
)
def test_components_match_a_union_find(
    n: int, pairs: list[tuple[int, int]], drop: set[int]
) -> None:
    from tiermem.consolidate import _components

    edges = [(a, b) for a, b in pairs if a < n and b < n]
    members = [i for i in range(n) if i not in drop]
    arrays = (np.array([a for a, _ in edges], np.int64), np.array([b for _, b in edges], np.int64))
    assert _components(n, members, arrays) == _union_find(members, edges)


@given(st.lists(st.lists(st.sampled_from("abcdefg"), max_size=6), min_size=1, max_size=8))
def test_jaccards_match_the_set_formula(words: list[list[str]]) -> None:
    from tiermem.summarize import _jaccards

    sets = [set(w) for w in words]
    want = [[len(a & b) / len(a | b) if a or b else 1.0 for b in sets] for a in sets]
    assert np.array_equal(_jaccards(words), np.array(want))


@given(
    st.lists(st.lists(st.integers(0, 29), min_size=1, max_size=6, unique=True), max_size=6),
    st.floats(-1.0, 1.0),
)
def test_near_centre_matches_a_loop_per_group(groups: list[list[int]], t: float) -> None:
    from tiermem.consolidate import _near_centre, _unit

    vecs = _unit(np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32))
    got = _near_centre(vecs, groups, t)
    assert len(got) == len(groups)
    for g, (kept, low, centre) in zip(groups, got, strict=True):
        c = _unit(vecs[g].mean(axis=0))
        sims = {i: float(vecs[i] @ c) for i in g}
        assert np.allclose(centre, c, atol=1e-6)
        assert low == pytest.approx(min(sims.values()), abs=1e-6)
        assert kept == [i for i in g if sims[i] >= t] or any(
            abs(v - t) < 1e-6 for v in sims.values()
        )


def test_summarizers(mem: tiermem.Engine) -> None:
    ex = ExtractiveSummarizer(max_chars=60)
    texts = ["the cat sat on the mat", "the cat sat on a mat", "dogs bark at night"]
    out = ex.summarize(texts)
    assert out.startswith("the cat sat on") and "dogs bark at night" in out and len(out) <= 60
    assert span_note(2, T0, T0 + timedelta(days=3)) == "(from 2 episodes, 2026-03-01 – 2026-03-04)"

    calls: list[list[str]] = []

    def llm(ts: list[str]) -> str:
        calls.append(ts)
        return "LLM SUMMARY"

    cs = CallableSummarizer(llm, budget=1)
    assert cs.summarize(["a"]) == "LLM SUMMARY"
    assert cs.summarize(["b b", "b b"]) == "b b"  # over budget: extractive
    cs.start_run()
    assert cs.summarize(["c"]) == "LLM SUMMARY"
    broken = CallableSummarizer(lambda ts: 1 / 0)  # type: ignore[arg-type,return-value]
    assert broken.summarize(["x"]) == "x" and broken.failures == 1

    mem.summarizer = CallableSummarizer(llm, budget=1)
    seed_store(mem)
    mem.run("consolidate")
    texts_made = sorted(m.text for m in semantic(mem))
    assert sum(t.startswith("LLM SUMMARY (from") for t in texts_made) == 1  # budget of one call
    assert len(calls) == 3  # two direct calls above, one in the run


def test_large_namespace_uses_the_index(
    mem: tiermem.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tiermem.consolidate as cons

    monkeypatch.setattr(cons, "EXACT_MAX", 10)  # force the usearch path
    seed_store(mem)
    report = mem.run("consolidate")
    assert report.merged == 7 and len(semantic(mem)) == 2


# -- crashes -----------------------------------------------------------------------------------

# What both crash children start with: imports, unit(seed, eps, s2) (a unit vector,
# or one at angle ~eps from it), and `old` (a day ago: past every min_age).
PRELUDE = textwrap.dedent(
    """
    import json, os, sys
    from datetime import UTC, datetime, timedelta
    import numpy as np, tiermem, tiermem.consolidate_apply
    def unit(seed, eps=0.0, s2=0):
        v = np.random.default_rng(seed).standard_normal({dim}).astype(np.float32)
        v /= np.linalg.norm(v)
        if eps:
            n = np.random.default_rng(s2).standard_normal({dim}).astype(np.float32)
            n -= (n @ v) * v
            v = v + eps * n / np.linalg.norm(n)
        return v / np.linalg.norm(v)
    old = datetime.now(UTC) - timedelta(days=1)
    """
).format(dim=DIM)

# ... and what both end with: the acked ids saved, the failpoint armed, one run.
EPILOGUE = textwrap.dedent(
    """
    with open(path + "/acked.json", "w") as fh:
        json.dump(ids, fh)
    os.environ["TIERMEM_FAILPOINT"] = point
    mem.run("consolidate")
    print("finished without crashing", flush=True)
    """
)

CHILD = (
    PRELUDE
    + textwrap.dedent(
        """
    path, url, prefix, point, chunk = sys.argv[1:6]
    tiermem.consolidate_apply.CHUNK_SOURCES = int(chunk)  # 4: one cluster a chunk
    mem = tiermem.open(path, embedder=tiermem.HashingEmbedder({dim}),
                       **{{"l1.url": url, "l1.prefix": prefix, "embedding.dim": {dim},
                          "moves.batch": 2, "moves.cold_batch": 2}})
    ids = []
    for c in range(3):
        for i in range(4):
            m = mem.add(f"cluster {{c}} item {{i}}", namespace="c",
                        embedding=unit(c, 0.15, 100 * c + i),
                        created_at=old + timedelta(minutes=10 * c + i))
            ids.append(m.id)
    for i in range(3):
        m = mem.add(f"loner {{i}}", namespace="c", embedding=unit(50 + i), created_at=old)
        ids.append(m.id)
    """
    ).format(dim=DIM)
    + EPILOGUE
)

# (failpoint, sources per chunk of steps (a)-(b)): the default chunk holds all three
# clusters; with 4, a kill lands between one cluster's steps and the next's
POINTS = [
    *((p, "1000") for p in CONSOLIDATE_STEPS),
    ("move.copied:2", "1000"),
    *((p, "4") for p in CONSOLIDATE_STEPS),
    ("consolidate.written:2", "4"),
    ("consolidate.marked:3", "4"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("point", "chunk"), POINTS)
def test_kill_during_consolidation_converges(
    tmp_path: Path, redis_url: str, prefix: str, open_store: OpenStore, point: str, chunk: str
) -> None:
    path = tmp_path / "store"
    path.mkdir()
    run_until_killed(CHILD, str(path), redis_url, prefix, point, chunk)
    acked = json.loads((path / "acked.json").read_text())
    mem = open_store(path)
    check(mem, acked)
    assert not Journal(path / "moves").pending(), "journal not cleared by recovery"
    converges(mem, acked)


@pytest.mark.slow
def test_a_crashed_runs_memory_gone_cold_is_still_finished(
    tmp_path: Path, redis_url: str, prefix: str, open_store: OpenStore
) -> None:
    """Killed after writing the semantic memories, which then go cold (a demote)
    before the re-run: the re-run finds them in L3 and finishes them, not a second set."""
    path = tmp_path / "store"
    path.mkdir()
    run_until_killed(CHILD, str(path), redis_url, prefix, "consolidate.written", "1000")
    acked = json.loads((path / "acked.json").read_text())
    mem = open_store(path)
    _, sem = check(mem, acked)
    assert len(sem) == 3
    for m in sem:
        mem.demote(m.id, to="l3")
    converges(mem, acked)
    assert {m.tier for m in check(mem, acked)[1]} == {"l3"}


Memories = list[tiermem.Memory]


def check(mem: tiermem.Engine, acked: list[str]) -> tuple[Memories, Memories]:
    """No episode lost or doubled, none in two semantic memories, none half-made."""
    every = list(mem.scan(namespace="c"))
    eps = [m for m in every if m.kind == "episodic"]
    sem = [m for m in every if m.kind == "semantic"]
    assert sorted(m.id for m in eps) == sorted(acked), "episode lost or duplicated"
    covered = [i for m in sem for i in m.source_ids]
    assert len(covered) == len(set(covered)), "an episode in two semantic memories"
    for m in sem:  # never half-made: complete row, a whole cluster of real episodes
        assert len(m.source_ids) == 4 and set(m.source_ids) <= set(acked)
        assert "(from 4 episodes" in m.text and abs(np.linalg.norm(m.embedding) - 1) < 1e-4
    return eps, sem


def converges(mem: tiermem.Engine, acked: list[str]) -> None:
    """A re-run finishes the crashed one: three clusters, sources marked and cold."""
    report = mem.run("consolidate")
    assert report.errors == []
    eps, sem = check(mem, acked)
    assert len(sem) == 3
    clusters = sorted(sorted(m.source_ids) for m in sem)
    assert clusters == sorted(sorted(acked[4 * c : 4 * c + 4]) for c in range(3))
    by_id = {m.id: m for m in eps}
    for m in sem:
        for i in m.source_ids:
            assert by_id[i].tier == "l3" and by_id[i].metadata["consolidated_into"] == m.id
    assert all(by_id[i].tier == "l1" for i in acked[12:])
    again = mem.run("consolidate")  # converged: nothing more to do
    assert (again.merged, again.moved) == (0, 0) and len(check(mem, acked)[1]) == 3


def test_sources_of_many_clusters_move_together(mem: tiermem.Engine) -> None:
    """Step (c) gathers the clusters' sources into the Mover's batches: six clusters
    go cold as one L3 file and one events append, not six of each."""
    for c in range(6):
        centre = unit(100 + c)
        for i in range(3):
            add(mem, f"topic {c} note {i}", near(centre, 0.15, 1000 * c + i), 5)
    events_before = mem.events.path.stat().st_size if mem.events.path.exists() else 0
    report = mem.run("consolidate")
    assert (report.merged, report.moved, report.errors) == (18, 18, [])
    assert len(semantic(mem)) == 6
    assert len(mem.backends.l3._manifest.data) == 1
    lines = mem.events.path.read_bytes()[events_before:].decode().splitlines()
    assert len(lines) == 18 and len({json.loads(x)["run"] for x in lines}) == 1


def test_new_episodes_grow_a_consolidated_memory_gone_cold(
    mem: tiermem.Engine, clock: FakeClock
) -> None:
    """A consolidated memory demoted to L3 (idle, e.g. `l2.idle`) still takes the
    episodes that reach it: grown in place in L3, not duplicated by a new one."""
    ids = seed_store(mem)
    mem.run("consolidate")
    _, sa = semantic(mem)
    mem.demote(sa.id, to="l3")
    clock.now += timedelta(hours=2)
    late = add(mem, "coffee with Ann once more", near(unit(1), 0.15, 60), 1.5)
    plan = mem.plan("consolidate")
    assert {a.id for a in plan.actions} == {*ids["young"], late}
    assert all(f"joins consolidated memory {sa.id}" in a.reason for a in plan.actions)
    report = mem.run("consolidate")
    assert (report.merged, report.errors) == (3, [])
    got = mem.get(sa.id)
    assert got.tier == "l3" and got.version == 2
    assert set(got.source_ids) == {*ids["a"], *ids["young"], late}
    assert len(semantic(mem)) == 2  # grown, not a new one
    assert mem.get(late).metadata["consolidated_into"] == sa.id
    assert mem.plan("consolidate").actions == []  # converged


GROW_CHILD = (
    PRELUDE
    + textwrap.dedent(
        """
    path, url, prefix, point, where = sys.argv[1:6]
    mem = tiermem.open(path, embedder=tiermem.HashingEmbedder({dim}),
                       **{{"l1.url": url, "l1.prefix": prefix, "embedding.dim": {dim}}})
    def episodes(first, n):
        return [mem.add(f"cluster {{c}} item {{i}}", namespace="c",
                        embedding=unit(c, 0.15, 100 * c + i), created_at=old).id
                for c in range(3) for i in range(first, first + n)]
    ids = episodes(0, 4)
    mem.run("consolidate")  # three semantic memories of 4 episodes each
    for m in mem.scan(namespace="c", kinds=["semantic"]):
        if where != "l1":
            mem.demote(m.id, to=where)
    ids += episodes(4, 2)  # two more a cluster: each memory grows
    """
    ).format(dim=DIM)
    + EPILOGUE
)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["l1", "l3"])
@pytest.mark.parametrize("point", CONSOLIDATE_STEPS)
def test_kill_while_growing_converges(
    tmp_path: Path, redis_url: str, prefix: str, open_store: OpenStore, point: str, where: str
) -> None:
    """Killed while three memories (in L1, or gone cold to L3) grow by two episodes
    each: nothing lost, no episode in two memories, and the re-run finishes the
    growth (6 sources each, one version more) instead of making new memories."""
    path = tmp_path / "store"
    path.mkdir()
    run_until_killed(GROW_CHILD, str(path), redis_url, prefix, point, where)
    acked = json.loads((path / "acked.json").read_text())
    mem = open_store(path)
    report = mem.run("consolidate")
    assert report.errors == []
    every = list(mem.scan(namespace="c"))
    eps = {m.id: m for m in every if m.kind == "episodic"}
    sem = [m for m in every if m.kind == "semantic"]
    assert sorted(eps) == sorted(acked), "episode lost or duplicated"
    assert len(sem) == 3 and {m.tier for m in sem} == {where}
    for c, m in enumerate(sorted(sem, key=lambda m: m.text)):
        want = [acked[4 * c + i] for i in range(4)] + [acked[12 + 2 * c + i] for i in range(2)]
        assert sorted(m.source_ids) == sorted(want) and m.version == 2
        assert "(from 6 episodes" in m.text
        for i in want:
            assert eps[i].tier == "l3" and eps[i].metadata["consolidated_into"] == m.id
    assert mem.plan("consolidate").actions == []
