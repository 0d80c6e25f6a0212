"""Memory types end to end: supersession, procedural versions and rollback, dedupe."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tiermem
from tests.conftest import DIM, OpenStore
from tiermem.memtypes import MAX_VARIANTS, merged_metadata, normalise


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, eps: float, seed: int = 99) -> np.ndarray:
    """A unit vector at cosine about 1 - eps²/2 from v."""
    noise = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    noise -= (noise @ v) * v
    w = v + eps * noise / np.linalg.norm(noise)
    return w / np.linalg.norm(w)


# -- supersession ------------------------------------------------------------------------------


def test_supersession_chain_in_search_and_sql(store: tiermem.Engine) -> None:
    a = store.add("Alice lives in Paris", namespace="s", kind="semantic", embedding=unit(1))
    b = store.add("Alice lives in Rome", namespace="s", kind="semantic", embedding=unit(1),
                  supersedes=a.id)  # fmt: skip
    c = store.add("Alice lives in Lisbon", namespace="s", kind="semantic", embedding=unit(1),
                  supersedes=b.id)  # fmt: skip
    assert [h.memory.id for h in store.search(unit(1), namespace="s", deep=True)] == [c.id]
    every = store.search(unit(1), namespace="s", deep=True, include_superseded=True)
    assert {h.memory.id for h in every} == {a.id, b.id, c.id}
    rows = store.sql("SELECT id, superseded_by, tier FROM memories ORDER BY id").to_pylist()
    chain = {r["id"]: (r["superseded_by"], r["tier"]) for r in rows}
    assert chain == {a.id: (b.id, "l3"), b.id: (c.id, "l3"), c.id: (None, "l1")}


# -- procedural versions -----------------------------------------------------------------------


def test_versions_supersede_and_only_current_is_searched(store: tiermem.Engine) -> None:
    ms = [
        store.add(f"deploy step v{i}", namespace="p", kind="procedural", name="deploy",
                  embedding=unit(5))
        for i in range(1, 4)
    ]  # fmt: skip
    assert [m.version for m in ms] == [1, 2, 3]
    vs = store.versions("deploy", namespace="p")
    assert [(m.id, m.version) for m in vs] == [(ms[2].id, 3), (ms[1].id, 2), (ms[0].id, 1)]
    assert vs[1].superseded_by == ms[2].id and vs[2].superseded_by == ms[1].id
    assert vs[0].superseded_by is None and vs[0].tier == "l1"
    assert {vs[1].tier, vs[2].tier} == {"l3"}
    hits = store.search(unit(5), namespace="p", deep=True)
    assert [h.memory.id for h in hits] == [ms[2].id]
    # another name or namespace is another procedure
    other = store.add("other", namespace="p", kind="procedural", name="build")
    assert other.version == 1 and store.versions("deploy", namespace="q") == []


def test_rollback_appends_a_copy_of_the_old_version(store: tiermem.Engine) -> None:
    v1 = store.add("run make", namespace="p", kind="procedural", name="build",
                   metadata={"shell": "bash"}, embedding=unit(1))  # fmt: skip
    v2 = store.add("run ninja", namespace="p", kind="procedural", name="build", embedding=unit(2))
    back = store.rollback("build", namespace="p", version=1)
    assert back.id not in (v1.id, v2.id) and back.version == 3 and back.text == "run make"
    assert back.metadata == {"shell": "bash", "rolled_back_from": 1}
    assert np.allclose(back.embedding, v1.embedding)
    vs = store.versions("build", namespace="p")
    assert [m.version for m in vs] == [3, 2, 1]
    assert vs[1].superseded_by == back.id and vs[0].superseded_by is None
    assert [h.memory.id for h in store.search(unit(1), namespace="p", deep=True)] == [back.id]
    assert store.rollback("build", namespace="p", version=3).id == back.id  # already current
    with pytest.raises(tiermem.ValidationError, match="version"):
        store.rollback("build", namespace="p", version=9)
    with pytest.raises(tiermem.NotFound):
        store.rollback("nope", namespace="p", version=1)
    # a new version after a rollback continues the numbering
    assert store.add("run bazel", namespace="p", kind="procedural", name="build").version == 4


def test_versions_found_in_every_tier(store: tiermem.Engine) -> None:
    v1 = store.add("a", namespace="p", kind="procedural", name="x")
    v2 = store.add("b", namespace="p", kind="procedural", name="x")
    store.demote(v2.id, to="l2")
    v3 = store.add("c", namespace="p", kind="procedural", name="x")
    assert [m.id for m in store.versions("x", namespace="p")] == [v3.id, v2.id, v1.id]


# -- dedupe ------------------------------------------------------------------------------------


def test_normalise() -> None:
    assert normalise("  Alice   LIKES tea!! ") == "alice likes tea"
    assert normalise("...x y.") == "x y"


def test_exact_duplicate_merges(store: tiermem.Engine) -> None:
    a = store.add("Alice likes green tea.", namespace="d", kind="semantic", metadata={"src": "a"},
                  importance=0.3)  # fmt: skip
    b = store.add("  alice LIKES green tea ", namespace="d", kind="semantic",
                  metadata={"src": "b", "extra": 1}, importance=0.8)  # fmt: skip
    assert b.id == a.id and b.version == 2 and b.access_count == 1
    assert b.metadata == {
        "src": "a",
        "extra": 1,
        "_variants": ["Alice likes green tea.", "  alice LIKES green tea "],
    }
    assert b.importance == 0.8
    got = store.get(a.id)
    assert got.version == 2 and got.metadata == b.metadata
    assert store.sql("SELECT count(*) AS n FROM memories").to_pylist() == [{"n": 1}]
    # episodic memories are not deduplicated by the default policy
    e1 = store.add("Alice likes green tea.", namespace="d")
    e2 = store.add("Alice likes green tea.", namespace="d")
    assert e1.id != e2.id


def test_exact_duplicate_found_in_l3_and_stale_index_ignored(store: tiermem.Engine) -> None:
    a = store.add("the sky is blue", namespace="d", kind="semantic")
    store.demote(a.id, to="l3")
    b = store.add("The sky is blue!", namespace="d", kind="semantic")
    assert b.id == a.id and store.get(a.id).tier == "l3"
    store.delete(a.id)
    c = store.add("the sky is blue", namespace="d", kind="semantic")
    assert c.id != a.id and c.version == 1


def test_near_duplicate_merges_and_far_does_not(store: tiermem.Engine) -> None:
    v = unit(3)
    a = store.add("Bob owns a red car", namespace="d", kind="semantic", embedding=v)
    close = near(v, 0.2)  # cosine ~0.98 >= 0.95
    assert float(close @ v) >= 0.95
    b = store.add("Bob has a red automobile", namespace="d", kind="semantic", embedding=close)
    assert b.id == a.id and b.version == 2
    assert b.metadata["_variants"] == ["Bob owns a red car", "Bob has a red automobile"]
    assert b.text == "Bob owns a red car"  # the existing text stays
    far = near(v, 0.6)  # cosine ~0.86 < 0.95
    c = store.add("Bob sold his car", namespace="d", kind="semantic", embedding=far)
    assert c.id != a.id
    # near duplicates in L2 are found too; other namespaces are not
    store.demote(a.id, to="l2")
    assert store.add("x", namespace="d", kind="semantic", embedding=near(v, 0.1)).id == a.id
    assert store.add("x", namespace="e", kind="semantic", embedding=v).id != a.id


def test_supersedes_is_never_deduplicated(store: tiermem.Engine) -> None:
    a = store.add("fact", namespace="d", kind="semantic", embedding=unit(1))
    b = store.add("fact", namespace="d", kind="semantic", embedding=unit(1), supersedes=a.id)
    assert b.id != a.id and store.get(a.id).superseded_by == b.id


def test_add_many_dedupes_within_the_batch_and_against_the_store(store: tiermem.Engine) -> None:
    old = store.add("known fact", namespace="d", kind="semantic")
    res = store.add_many(
        [
            {"text": "new fact one", "kind": "semantic"},
            {"text": "New fact one.", "kind": "semantic"},
            {"text": "KNOWN fact", "kind": "semantic"},
            {"text": "an episode"},
            {"text": "", "kind": "semantic"},
            {"text": "near", "kind": "semantic", "embedding": unit(7).tolist()},
            {"text": "near too", "kind": "semantic", "embedding": near(unit(7), 0.1).tolist()},
        ],
        namespace="d",
    )
    ids = res.ids
    assert ids[0] == ids[1] and ids[2] == old.id and ids[5] == ids[6]
    assert ids[3] is not None and ids[4] is None and 4 in res.errors
    assert len({i for i in ids if i}) == 4
    assert store.get(ids[0]).metadata["_variants"] == ["new fact one", "New fact one."]


def test_variants_are_bounded() -> None:
    meta: dict[str, object] = {}
    text = "t0"
    for i in range(1, 30):
        meta = merged_metadata(meta, {}, text, f"t{i}")
    variants = meta["_variants"]
    assert isinstance(variants, list) and len(variants) == MAX_VARIANTS
    assert variants[-1] == "t29"
    big = merged_metadata({}, {}, "a" * 900, "b" * 900)
    assert len(big["_variants"]) == 2


def test_forget_clears_the_dedupe_index(store: tiermem.Engine) -> None:
    a = store.add("fact", namespace="d", kind="semantic")
    store.forget(namespace="d")
    assert store.add("fact", namespace="d", kind="semantic").id != a.id


def test_dedupe_off_when_policy_has_none(open_store: OpenStore, tmp_path: object) -> None:
    from pathlib import Path

    policy = Path(str(tmp_path)) / "p.yaml"
    policy.write_text("version: 1\nkinds:\n  semantic:\n    dedupe: null\n")
    mem = open_store(policy=str(policy))
    a = mem.add("fact", namespace="d", kind="semantic")
    assert mem.add("fact", namespace="d", kind="semantic").id != a.id


# -- batched dedupe == one by one ----------------------------------------------------------------

_TEXTS = ["tea", "Tea!", "coffee", "water", "juice"]


def _stored(mem: tiermem.Engine, ns: str) -> list[tuple[str, int, list[str], float]]:
    """A store-independent picture of a namespace: texts, versions, variants, importance."""
    rows = [
        (m.text, m.version, list(m.metadata.get("_variants", [])), m.importance)
        for m in mem.scan(namespace=ns)
    ]
    return sorted(rows)


def _partition(ids: list[str | None]) -> list[int]:
    """Which earlier item each item landed with (ids differ between stores, shapes don't)."""
    first: dict[str | None, int] = {}
    return [first.setdefault(i, n) for n, i in enumerate(ids)]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_TEXTS) - 1),  # text
            st.integers(0, 2),  # cluster of the vector
            st.sampled_from([0.0, 0.05, 0.5]),  # distance from the cluster centre
            st.sampled_from([0.3, 0.9]),  # importance
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(0, 2),  # how many of the items are already stored (added one by one first)
    st.sampled_from([None, 2]),  # L1 capacity for facts: None, or 2 (writes evict to L2)
)
def test_add_many_dedupe_matches_adding_one_by_one(
    open_store: OpenStore,
    tmp_path: Path,
    prefix: str,
    spec: list[tuple[int, int, float, float]],
    pre: int,
    l1_capacity: int | None,
) -> None:
    """Batched dedupe ends where adding the items one at a time, in order, ends;
    also when the batch's own writes evict merge targets to L2 meanwhile."""
    items = [
        {
            "text": _TEXTS[t],
            "kind": "semantic",
            "embedding": near(unit(100 + c), eps, seed=n).tolist(),
            "importance": imp,
        }
        for n, (t, c, eps, imp) in enumerate(spec)
    ]
    run = uuid.uuid4().hex[:8]
    policy = tmp_path / f"{run}.yaml"
    cap = "" if l1_capacity is None else f"    l1: {{capacity: {l1_capacity}, on_full: evict}}\n"
    policy.write_text(f"version: 1\nkinds:\n  semantic:\n    dedupe: 0.95\n{cap}")
    batch, single = (
        open_store(
            tmp_path / run / name,
            policy=str(policy),
            overrides={"l1.prefix": f"{prefix}:{run}:{name}"},
        )
        for name in ("batch", "single")
    )
    try:
        for item in items[:pre]:
            batch.add(namespace="q", **item)
            single.add(namespace="q", **item)
        got = batch.add_many(items[pre:], namespace="q").ids
        want = [single.add(namespace="q", **item).id for item in items[pre:]]
        assert _partition(got) == _partition(want)
        assert _stored(batch, "q") == _stored(single, "q")  # one copy each: no stale tier
    finally:
        batch.close()
        single.close()
