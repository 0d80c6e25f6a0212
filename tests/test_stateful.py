"""The whole engine against a dict model (hypothesis stateful testing).

Random add / delete / update / move / cool (L1 to L2) / get / search / forget / reopen /
consolidate across two namespaces (a get may promote on read: the default
policy's ``promote.on_read``). Invariants after every step: nothing lost, nothing
resurrected, exactly one home tier per memory (the one the model expects),
and a search never crosses namespaces. A consolidation may add semantic
memories and move episodes to L3; its rule checks what it did (every
episode kept, each marked episode in L3 and in exactly one semantic
memory of its namespace) before the model takes it in.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import redis
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

import tiermem
from tests.conftest import DIM, drop_prefix

NAMESPACES = ("tenant:a", "tenant:b")
TIERS = ("l1", "l2", "l3")


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def make_machine(redis_url: str) -> type[RuleBasedStateMachine]:
    class EngineMachine(RuleBasedStateMachine):
        ids = Bundle("ids")

        def __init__(self) -> None:
            super().__init__()
            self.dir = Path(tempfile.mkdtemp(prefix="tm-stateful-"))
            self.prefix = f"tmtest:{uuid.uuid4().hex[:12]}"
            self.model: dict[str, dict[str, object]] = {}  # id -> ns, tier, importance
            self.now = datetime.now(UTC)  # moved on by consolidate (its min_age is 1h)
            self.events_seen = 0  # events log lines taken in (`_follow_read_promotions`)
            self.mem = self._open()

        def _open(self) -> tiermem.Engine:
            return tiermem.open(
                self.dir,
                clock=lambda: self.now,
                embedder=tiermem.HashingEmbedder(DIM),
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

        @rule(
            target=ids,
            ns=st.sampled_from(NAMESPACES),
            seed=st.integers(0, 50),
            tier=st.sampled_from(TIERS),
        )
        def add(self, ns: str, seed: int, tier: str) -> str:
            m = self.mem.add(f"memory {seed}", namespace=ns, embedding=vector(seed))
            if tier != "l1":
                self.mem.demote(m.id, to=tier)
            self.model[m.id] = {"ns": ns, "tier": tier, "importance": 0.5}
            return m.id

        @rule(target=ids, ns=st.sampled_from(NAMESPACES), n=st.integers(1, 12))
        def add_many(self, ns: str, n: int) -> str:
            res = self.mem.add_many(
                [{"text": f"batch {i}", "embedding": vector(100 + i)} for i in range(n)],
                namespace=ns,
            )
            for id_ in res.ids:
                assert id_ is not None
                self.model[id_] = {"ns": ns, "tier": "l1", "importance": 0.5}
            return str(res.ids[0])

        @rule(target=ids, ns=st.sampled_from(NAMESPACES), seed=st.integers(200, 203))
        def add_topic(self, ns: str, seed: int) -> str:
            """Four near-identical episodes: something for consolidation to cluster
            (min_cluster 3), even after the bundle's one is deleted or moved."""
            got = []
            for i in range(4):
                v = vector(seed) + 0.01 * vector(1000 + i)
                m = self.mem.add(f"topic {seed} note {i}", namespace=ns, embedding=v)
                self.model[m.id] = {"ns": ns, "tier": "l1", "importance": 0.5}
                got.append(m.id)
            return got[0]

        @rule()
        def consolidate(self) -> None:
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
                    assert m.tier == "l3" and into.get(m.id) == target
                    assert every[str(target)].namespace == m.namespace
                    self.model[m.id]["tier"] = "l3"
                elif m.kind == "semantic":
                    self.model[m.id] = {"ns": m.namespace, "tier": m.tier}
                    self.model[m.id]["importance"] = m.importance
            assert set(every) == set(self.model)
            event(f"consolidated: {'some' if report.merged else 'none'}")

        @rule(id_=consumes(ids))
        def delete(self, id_: str) -> None:
            existed = id_ in self.model
            assert self.mem.delete(id_) is existed
            self.model.pop(id_, None)

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
            src = str(self.model[id_]["tier"])
            if TIERS.index(tier) < TIERS.index(src):
                self.mem.promote(id_, to=tier)
            else:
                self.mem.demote(id_, to=tier)
            self.model[id_]["tier"] = tier

        @rule(ns=st.sampled_from(NAMESPACES), seed=st.integers(0, 50))
        def search(self, ns: str, seed: int) -> None:
            hits = self.mem.search(vector(seed), namespace=ns, k=1000, deep=True)
            got = [h.memory.id for h in hits]
            assert len(got) == len(set(got)), "duplicate hits"
            assert set(got) == {i for i, m in self.model.items() if m["ns"] == ns}
            for h in hits:
                assert h.memory.namespace == ns and h.tier == self.model[h.memory.id]["tier"]
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            # no _follow_read_promotions: a search moves nothing (the invariant checks)

        @rule(ns=st.sampled_from(NAMESPACES))
        def cool(self, ns: str) -> None:
            """Every L1 memory of a namespace to L2: something for a get to read through."""
            for i, m in self.model.items():
                if m["ns"] == ns and m["tier"] == "l1":
                    self.mem.demote(i, to="l2")
                    m["tier"] = "l2"

        @rule(id_=ids, ns=st.sampled_from(NAMESPACES))
        def get(self, id_: str, ns: str) -> None:
            """get_many of a namespace's memories and one bundle id (maybe deleted)."""
            wanted = [i for i, m in self.model.items() if m["ns"] == ns] + [id_]
            got = self.mem.get_many(wanted)
            assert set(got) == {i for i in wanted if i in self.model}, "lost or came back"
            for i, m in got.items():
                assert (m.namespace, m.tier) == (self.model[i]["ns"], self.model[i]["tier"])
            self._follow_read_promotions()

        def _follow_read_promotions(self) -> None:
            """A read may promote what it read (``promote.on_read``): take in each such
            move from the events log, checking it left the tier the model expects."""
            events = list(self.mem.events.read())
            for e in events[self.events_seen :]:
                if e["job"] == "promote-on-read":
                    assert self.model[e["id"]]["tier"] == e["src"], "promoted from elsewhere"
                    self.model[e["id"]]["tier"] = e["dst"]
                    event("promoted on read")
            self.events_seen = len(events)

        @rule(ns=st.sampled_from(NAMESPACES))
        def forget(self, ns: str) -> None:
            expected = sum(1 for m in self.model.values() if m["ns"] == ns)
            assert self.mem.forget(namespace=ns) == expected
            self.model = {i: m for i, m in self.model.items() if m["ns"] != ns}

        @rule()
        def reopen(self) -> None:
            self.mem.close()
            self.mem = self._open()

        @invariant()
        def one_home_tier_nothing_lost(self) -> None:
            seen = [(m.id, m.tier, m.namespace, m.importance) for m in self.mem.scan()]
            assert len(seen) == len({s[0] for s in seen}), "a memory lives in two tiers"
            assert {s[0]: (s[1], s[2]) for s in seen} == {
                i: (m["tier"], m["ns"]) for i, m in self.model.items()
            }
            for id_, _, _, importance in seen:
                assert abs(importance - float(self.model[id_]["importance"])) < 1e-9  # type: ignore[arg-type]

    return EngineMachine


def test_engine_matches_model(redis_url: str) -> None:
    run_state_machine_as_test(
        make_machine(redis_url),
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
