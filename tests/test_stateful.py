"""The whole engine against a dict model (hypothesis stateful testing).

Random add (some with a time-to-live) / delete / update / move / cool (L1 to L2) /
get / search / forget / reopen / consolidate / the lifecycle jobs (demote, promote,
expire, compact, checkpoint, with the clock moved on) across two namespaces,
under a policy with small capacities, so adds evict and jobs move things; and
again with L1 refusing what does not fit (``on_full: reject``): adds and a
user's promotions into a full L1 raise `CapacityError` and change nothing,
the promote job and read-through hold back, consolidation writes into L2.

The model learns what the engine moved on its own (an eviction, a read-through
promotion, a job) from the events log, checking each move left the tier the
model had; a user's own moves must be logged too. Invariants after every step:
nothing lost, nothing resurrected, exactly one home tier per memory (the one
the model expects), and a search or get never crosses namespaces or returns
an expired memory. A consolidation may add semantic memories and move episodes
to L3; its rule checks what it did (every episode kept, each marked episode in
L3 and in exactly one semantic memory of its namespace) before the model takes
it in.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

import tiermem
from tests.conftest import DIM, drop_prefix

NAMESPACES = ("tenant:a", "tenant:b")
TIERS = ("l1", "l2", "l3")
# Small capacities, so adds evict (on_full: evict) or refuse (reject) and the jobs
# find work; hits: 1 so that a search makes an L2/L3 memory due for the promote job.
POLICY = """
version: 1
kinds:
  episodic:
    l1: {capacity: 6, evict: [ttl, hyperbolic], idle: 1h, on_full: %(on_full)s}
    l2: {capacity: 10, evict: [lfu], idle: 1d}
    promote: {hits: 1, window: 1h, on_read: 1}
    consolidate:
      {every: 6h, similarity: 0.85, min_cluster: 3, min_age: 1h, into: semantic, sources_to: l3}
  semantic:
    l1: {capacity: 3, evict: [lfu], idle: 1d, on_full: %(on_full)s}
"""


L1_CAPACITY = {"episodic": 6, "semantic": 3}


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def make_machine(redis_url: str, on_full: str = "evict") -> type[RuleBasedStateMachine]:
    class EngineMachine(RuleBasedStateMachine):
        ids = Bundle("ids")

        def __init__(self) -> None:
            super().__init__()
            self.dir = Path(tempfile.mkdtemp(prefix="tm-stateful-"))
            self.policy = self.dir.with_name(self.dir.name + "-policy.yaml")
            self.policy.write_text(POLICY % {"on_full": on_full})
            self.prefix = f"tmtest:{uuid.uuid4().hex[:12]}"
            # id -> ns, tier, importance, expires (None or a datetime)
            self.model: dict[str, dict[str, object]] = {}
            self.now = datetime.now(UTC)  # moved on by consolidate and the jobs
            self.events_seen = 0  # events log lines taken in (`_follow`)
            self.mem = self._open()

        def _open(self, read_only: bool = False) -> tiermem.Engine:
            return tiermem.open(
                self.dir,
                read_only=read_only,
                clock=lambda: self.now,
                embedder=tiermem.HashingEmbedder(DIM),
                policy=str(self.policy),
                **{
                    "l1.url": redis_url,
                    "l1.prefix": self.prefix,
                    "embedding.dim": DIM,
                    "l2.exact_threshold": 8,
                },
            )

        def teardown(self) -> None:
            self.mem.close()
            drop_prefix(redis.Redis.from_url(redis_url), self.prefix)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.policy.unlink(missing_ok=True)

        def _new(self, id_: str, ns: str, expires: datetime | None = None) -> None:
            """A memory just added (in L1; an eviction it caused is in the events)."""
            self.model[id_] = {"ns": ns, "tier": "l1", "importance": 0.5, "expires": expires}

        def _live(self, id_: str) -> bool:
            """In the model and not expired (what a get or search may return)."""
            m = self.model.get(id_)
            return m is not None and (m["expires"] is None or m["expires"] > self.now)  # type: ignore[operator]

        def _refused(self, ns: str, tier: str = "l1", kind: str = "episodic") -> None:
            """A write refused for want of room: only under reject, and only when full."""
            assert on_full == "reject", "CapacityError where the policy evicts"
            held = sum(1 for _ in self.mem.scan(namespace=ns, kinds=[kind], tiers=[tier]))
            assert held >= L1_CAPACITY[kind] if tier == "l1" else True
            event("refused: full")

        def _to(self, id_: str, tier: str) -> None:
            """A user's move of `id_` to `tier`; the model learns it from the events."""
            src = str(self.model[id_]["tier"])
            if TIERS.index(tier) < TIERS.index(src):
                try:
                    self.mem.promote(id_, to=tier)
                except tiermem.CapacityError:
                    self._refused(str(self.model[id_]["ns"]), tier)
                    tier = src  # nothing moved
            elif tier != src:
                self.mem.demote(id_, to=tier)
            self._follow()
            assert self.model[id_]["tier"] == tier, "a user's move missing from the events"

        @rule(
            target=ids,
            ns=st.sampled_from(NAMESPACES),
            seed=st.integers(0, 50),
            tier=st.sampled_from(TIERS),
        )
        def add(self, ns: str, seed: int, tier: str) -> object:
            try:
                m = self.mem.add(f"memory {seed}", namespace=ns, embedding=vector(seed))
            except tiermem.CapacityError:
                self._refused(ns)
                return multiple()
            self._new(m.id, ns)
            self._follow()  # the add may have evicted (this one too)
            if TIERS.index(tier) > TIERS.index(str(self.model[m.id]["tier"])):
                self._to(m.id, tier)
            return m.id

        @rule(
            target=ids,
            ns=st.sampled_from(NAMESPACES),
            seed=st.integers(0, 50),
            minutes=st.sampled_from([1, 90, 3000]),
        )
        def add_expiring(self, ns: str, seed: int, minutes: int) -> object:
            ttl = timedelta(minutes=minutes)
            text = f"short-lived {seed}"
            try:
                m = self.mem.add(text, namespace=ns, embedding=vector(seed), ttl=ttl)
            except tiermem.CapacityError:
                self._refused(ns)
                return multiple()
            assert m.expires_at == self.now + ttl
            self._new(m.id, ns, self.now + ttl)
            self._follow()
            return m.id

        @rule(target=ids, ns=st.sampled_from(NAMESPACES), n=st.integers(1, 12))
        def add_many(self, ns: str, n: int) -> object:
            res = self.mem.add_many(
                [{"text": f"batch {i}", "embedding": vector(100 + i)} for i in range(n)],
                namespace=ns,
            )
            assert all(isinstance(e, tiermem.CapacityError) for e in res.errors.values())
            if res.errors:
                self._refused(ns)
            got = [id_ for id_ in res.ids if id_ is not None]
            assert len(got) + len(res.errors) == n
            for id_ in got:
                self._new(id_, ns)
            self._follow()
            return multiple(*got[:1])

        @rule(target=ids, ns=st.sampled_from(NAMESPACES), seed=st.integers(200, 201))
        def add_topic(self, ns: str, seed: int) -> object:
            """Four near-identical episodes: something for consolidation to cluster
            (min_cluster 3), even after the bundle's one is deleted or moved."""
            got = []
            for i in range(4):
                v = vector(seed) + 0.01 * vector(1000 + i)
                try:
                    m = self.mem.add(f"topic {seed} note {i}", namespace=ns, embedding=v)
                except tiermem.CapacityError:
                    self._refused(ns)
                    continue
                self._new(m.id, ns)
                got.append(m.id)
            self._follow()
            return multiple(*got[:1])

        @rule(target=ids, cool=st.booleans())
        def consolidate(self, cool: bool) -> object:
            """Its new memories join the bundle, so later rules move, update and
            delete them, and add_topic's episodes grow them where they are; with
            `cool` they go to L3 at once (as `l2.idle` would send them)."""
            self.now += timedelta(hours=2)
            before = set(self.model)
            report = self.mem.run("consolidate")
            assert report.errors == []
            every = {m.id: m for m in self.mem.scan()}
            assert before <= set(every), "consolidation lost a memory"
            into: dict[str, str] = {}
            for m in every.values():
                if m.kind == "semantic":
                    assert m.id not in before or self.model[m.id]["ns"] == m.namespace
                    for sid in m.source_ids:
                        assert sid not in into, "an episode in two semantic memories"
                        into[sid] = m.id
            for m in every.values():
                target = m.metadata.get("consolidated_into")
                if m.kind == "episodic" and target is not None:
                    assert m.tier == "l3"
                    if target in every:
                        assert into.get(m.id) == target
                        assert every[str(target)].namespace == m.namespace
                    else:  # a user deleted its memory: it stays consolidated, not redone
                        assert m.id not in into and target not in self.model
                    self.model[m.id]["tier"] = "l3"
                elif m.kind == "semantic":
                    had = self.model.get(m.id, {}).get("sources")
                    if isinstance(had, int) and len(m.source_ids) > had:
                        event(f"consolidation grew a memory in {m.tier}")
                    self.model[m.id] = {"ns": m.namespace, "tier": m.tier, "expires": None}
                    self.model[m.id]["importance"] = m.importance
                    self.model[m.id]["sources"] = len(m.source_ids)
            assert set(every) == set(self.model)
            self.events_seen = len(list(self.mem.events.read()))  # checked above instead
            event(f"consolidated: {'some' if report.merged else 'none'}")
            made = [i for i, m in every.items() if m.kind == "semantic" and i not in before]
            for id_ in made if cool else []:
                self._to(id_, "l3")
            return multiple(*made)

        # One rule per job (not one rule for all), so each is picked as often as a write.
        @rule(minutes=st.sampled_from([0, 30, 120, 3000]))
        def demote_job(self, minutes: int) -> None:
            self._run("demote", minutes)

        @rule(minutes=st.sampled_from([0, 30, 120]))
        def promote_job(self, minutes: int) -> None:
            self._run("promote", minutes)

        @rule(minutes=st.sampled_from([0, 30, 120, 3000]))
        def expire_job(self, minutes: int) -> None:
            self._run("expire", minutes)
            assert all(self._live(i) for i in self.model), "an expired memory survived"

        @rule(job=st.sampled_from(["compact", "checkpoint"]))
        def housekeeping_job(self, job: str) -> None:
            self._run(job, 0)

        def _run(self, job: str, minutes: int) -> tiermem.JobReport:
            """A lifecycle job, some time on: each move or delete it made is in the events."""
            self.now += timedelta(minutes=minutes)
            report = self.mem.run(job)
            assert report.errors == []
            followed = self._follow()
            assert followed[job] == report.moved + report.deleted
            assert set(followed) <= {job, "evict"}  # a promotion over capacity evicts
            event(f"{job}: {'some' if followed[job] else 'none'}")
            return report

        @rule(id_=consumes(ids))
        def delete(self, id_: str) -> None:
            existed = id_ in self.model
            assert self.mem.delete(id_) is existed
            self.model.pop(id_, None)
            self._follow()

        @rule(id_=ids, importance=st.floats(0, 1))
        def update(self, id_: str, importance: float) -> None:
            if id_ not in self.model:
                return
            self.mem.update(id_, importance=importance)
            self.model[id_]["importance"] = importance

        @rule(id_=ids, tier=st.sampled_from(TIERS))
        def move(self, id_: str, tier: str) -> None:
            if id_ not in self.model:
                return
            self._to(id_, tier)

        @rule(ns=st.sampled_from(NAMESPACES), seed=st.integers(0, 50))
        def search(self, ns: str, seed: int) -> None:
            self._search(ns, seed)

        @rule(ns=st.sampled_from(NAMESPACES), seed=st.integers(0, 50))
        def search_then_promote(self, ns: str, seed: int) -> None:
            """A search's hits make each of its L2/L3 episodes due (``hits: 1``; semantic
            memories have no promote rule here), so the promote job moves them all up
            a tier, and may evict (L1 over capacity)."""
            hits = self._search(ns, seed)
            report = self._run("promote", 0)
            moved = {e["id"] for e in self.mem.events.read() if e["run"] == report.run}
            due = {h.memory.id for h in hits if h.tier != "l1" and h.memory.kind == "episodic"}
            held_back = [n for n in report.notes if "held back" in n]
            assert due <= moved or held_back
            assert not held_back or on_full == "reject"
            event(f"promote held back: {bool(held_back)}")

        def _search(self, ns: str, seed: int) -> list[tiermem.Hit]:
            hits = self.mem.search(vector(seed), namespace=ns, k=1000, deep=True)
            got = [h.memory.id for h in hits]
            assert len(got) == len(set(got)), "duplicate hits"
            assert set(got) == {i for i, m in self.model.items() if m["ns"] == ns and self._live(i)}
            for h in hits:
                assert h.memory.namespace == ns and h.tier == self.model[h.memory.id]["tier"]
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            # no _follow_read_promotions: a search moves nothing (the invariant checks)
            return hits

        @rule(ns=st.sampled_from(NAMESPACES))
        def cool(self, ns: str) -> None:
            """Every L1 memory of a namespace to L2: something for a get to read through."""
            for i, m in list(self.model.items()):
                if m["ns"] == ns and m["tier"] == "l1":
                    self._to(i, "l2")

        @rule(id_=ids, ns=st.sampled_from(NAMESPACES))
        def get(self, id_: str, ns: str) -> None:
            """get_many of a namespace's memories and one bundle id (maybe deleted)."""
            wanted = [i for i, m in self.model.items() if m["ns"] == ns] + [id_]
            got = self.mem.get_many(wanted)
            assert set(got) == {i for i in wanted if self._live(i)}, "lost, came back or expired"
            for i, m in got.items():
                assert (m.namespace, m.tier) == (self.model[i]["ns"], self.model[i]["tier"])
            self._follow()  # a get may promote what it read (``promote.on_read``)

        def _follow(self) -> Counter[str]:
            """Take in the moves and deletes logged since the last call, checking each
            left the tier the model had; returns how many there were, by job."""
            events = list(self.mem.events.read())
            n: Counter[str] = Counter()
            for e in events[self.events_seen :]:
                m = self.model.get(e["id"])
                if e["action"] not in ("move", "delete") or m is None:
                    continue  # forget, and a user's delete: the rule has taken them in
                assert m["tier"] == e["src"], f"{e['job']} moved {e['id']} from elsewhere"
                if e["action"] == "move":
                    m["tier"] = e["dst"]
                else:
                    del self.model[e["id"]]
                n[e["job"]] += 1
                event(f"followed: {e['job']} {e['action']}")
            self.events_seen = len(events)
            return n

        @rule(ns=st.sampled_from(NAMESPACES))
        def forget(self, ns: str) -> None:
            expected = sum(1 for m in self.model.values() if m["ns"] == ns)
            assert self.mem.forget(namespace=ns) == expected
            self.model = {i: m for i, m in self.model.items() if m["ns"] != ns}
            self._follow()

        @rule(ns=st.sampled_from(NAMESPACES), seed=st.integers(0, 50))
        def reader_sees_it_all(self, ns: str, seed: int) -> None:
            """Another process (a read-only engine on the same directory) sees what the
            writer wrote, each memory in its tier, and searches one namespace only."""
            with self._open(read_only=True) as reader:
                seen = {m.id: (m.tier, m.namespace) for m in reader.scan()}
                assert seen == {i: (m["tier"], m["ns"]) for i, m in self.model.items()}
                hits = reader.search(vector(seed), namespace=ns, k=1000, deep=True)
                got = {h.memory.id for h in hits}
                assert got == {i for i, m in self.model.items() if m["ns"] == ns and self._live(i)}

        @rule()
        def reopen(self) -> None:
            self.mem.close()
            self.mem = self._open()
            report = self.mem.check()  # the engine's own consistency check agrees
            assert report.ok, report.problems

        @invariant()
        def one_home_tier_nothing_lost(self) -> None:
            seen = [(m.id, m.tier, m.namespace, m.importance) for m in self.mem.scan()]
            assert len(seen) == len({s[0] for s in seen}), "a memory lives in two tiers"
            assert {s[0]: (s[1], s[2]) for s in seen} == {
                i: (m["tier"], m["ns"]) for i, m in self.model.items()
            }
            for id_, _, _, importance in seen:
                assert abs(importance - float(self.model[id_]["importance"])) < 1e-9  # type: ignore[arg-type]

        @invariant()
        def l1_within_capacity(self) -> None:
            """Adds, every kind of promotion and consolidation evict (on_full: evict) or
            are refused or held back (reject): L1 is never over capacity."""
            held = Counter((m.namespace, m.kind) for m in self.mem.scan(tiers=["l1"]))
            for (ns, kind), n in held.items():
                assert n <= L1_CAPACITY[kind], f"{ns}/{kind}: {n} in L1"

    return EngineMachine


@pytest.mark.parametrize("on_full", ["evict", "reject"])
def test_engine_matches_model(redis_url: str, on_full: str) -> None:
    run_state_machine_as_test(
        make_machine(redis_url, on_full),
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
