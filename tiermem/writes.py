"""The write path of the engine: add (with capacity, dedupe, versions), update,
delete, forget, supersession."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from tiermem import records, schema
from tiermem.core import EngineCore
from tiermem.errors import NotFound, TierMemError, ValidationError
from tiermem.fields import check_namespace
from tiermem.lifecycle import capacity
from tiermem.model import (
    TIERS,
    Action,
    BatchResult,
    Memory,
    MemoryIn,
    TierName,
)


class Writes(EngineCore):
    """add, add_many, update, delete, delete_many, forget, versions, rollback."""

    def add(
        self,
        text: str,
        *,
        namespace: str,
        kind: str = "episodic",
        metadata: dict[str, Any] | None = None,
        importance: float = 0.5,
        embedding: Any = None,
        ttl: Any = None,
        pinned: bool = False,
        created_at: datetime | None = None,
        name: str | None = None,
        supersedes: str | None = None,
    ) -> Memory:
        """Add one memory; returns it as stored. Raises ValidationError on bad input."""
        item = MemoryIn.parse(
            {
                "text": text,
                "namespace": namespace,
                "kind": kind,
                "metadata": metadata,
                "importance": importance,
                "embedding": embedding,
                "ttl": ttl,
                "pinned": pinned,
                "created_at": created_at,
                "name": name,
                "supersedes": supersedes,
            }
        )
        if item.supersedes is not None:
            self._check_supersedes(item)
        if self.types.handles(item):  # deduplicated kinds, named procedures
            memory = self.types.add(item)
            if item.supersedes is not None:
                self._supersede(item.supersedes, memory.id)
            return memory
        memories, errors = self._write([item])
        if errors:
            raise errors[0]
        memory = memories[0]
        if item.supersedes is not None:
            self._supersede(item.supersedes, memory.id)
        return memory

    def add_many(
        self, items: Iterable[dict[str, Any] | MemoryIn], *, namespace: str | None = None
    ) -> BatchResult:
        """Add many memories; valid items are written even when others fail."""
        items = list(items)
        ids: list[str | None] = [None] * len(items)
        errors: dict[int, TierMemError] = {}
        good: list[tuple[int, MemoryIn]] = []
        claimed: list[tuple[int, MemoryIn]] = []
        for i, parsed in enumerate(records.parse_batch(items, namespace, self.dim)):
            if isinstance(parsed, TierMemError):
                errors[i] = parsed
            else:
                (claimed if self.types.handles(parsed) else good).append((i, parsed))
        for (i, _), got in zip(
            claimed, self.types.add_many([item for _, item in claimed]), strict=True
        ):
            if isinstance(got, Memory):
                ids[i] = got.id
            else:
                errors[i] = got
        if good:
            table, _, failed = self._write_rows([item for _, item in good])
            for j, (i, _) in enumerate(good):
                if j in failed:
                    errors[i] = failed[j]
            written = [i for j, (i, _) in enumerate(good) if j not in failed]
            for i, id_ in zip(written, table.column("id").to_pylist(), strict=True):
                ids[i] = id_
        return BatchResult(ids=ids, errors=errors)

    def _write(
        self, items: Sequence[MemoryIn], *, versions: Sequence[int] | None = None
    ) -> tuple[list[Memory], dict[int, TierMemError]]:
        """Write the items that fit (policy capacity); returns them and errors by index.

        `versions` (one per item) replaces the new rows' version 1 (procedures).
        """
        table, places, errors = self._write_rows(items, versions=versions)
        memories = schema.to_memories(table, "l1")
        return [
            m.model_copy(update={"tier": p}) for m, p in zip(memories, places, strict=True)
        ], errors

    def _write_rows(
        self, items: Sequence[MemoryIn], *, versions: Sequence[int] | None = None
    ) -> tuple[pa.Table, list[TierName], dict[int, TierMemError]]:
        """`_write` without building Memory objects: the rows written and their tiers."""
        b = self._writable()
        with self._mutex:
            adm = capacity.admit(items, self.policy, self.lifecycle.count)
            ttls = {kind: self.policy.for_kind(kind).ttl for kind in {m.kind for m in items}}
            chosen = [_with_ttl(items[i], ttls[items[i].kind]) for i in adm.admitted]
            if not chosen:
                return schema.schema(self.dim).empty_table(), [], adm.errors
            vecs = records.embed_items(chosen, self.embedder, self.dim)
            table = records.new_rows(chosen, vecs, self.clock(), self.dim)
            if versions is not None:
                col = pa.array([versions[i] for i in adm.admitted], pa.int64())
                table = table.set_column(table.schema.get_field_index("version"), "version", col)
            places: list[TierName] = [self.policy.for_kind(m.kind).place for m in chosen]
            l1_counts: dict[tuple[str, str], int] = {}
            for tier in dict.fromkeys(places):
                rows = [i for i, p in enumerate(places) if p == tier]
                part = table.take(rows) if len(rows) < len(places) else table
                if tier == "l1":  # fresh ids: no upsert DEL; counts for `overflow`
                    l1_counts = b.l1.add_new(part)
                else:
                    b.tiers[tier].put(part)

            def count(tier: TierName, ns: str, kind: str) -> int:
                known = l1_counts.get((ns, kind)) if tier == "l1" else None
                return self.lifecycle.count(tier, ns, kind) if known is None else known

            capacity.overflow(adm, self.policy, count)
            for tier, ns, kind in adm.evict:
                self.lifecycle.evict(tier, ns, kind, self.clock())
        return table, places, adm.errors

    def update(
        self,
        id: str,
        *,
        text: str | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float | None = None,
        pinned: bool | None = None,
    ) -> Memory:
        """Change a memory in place (in its tier); content edits make a new version."""
        with self._mutex:
            old = self._find_one(id)
            changes: dict[str, Any] = {}
            if text is not None or metadata is not None or importance is not None:
                item = MemoryIn.parse(
                    {
                        "text": old.text if text is None else text,
                        "namespace": old.namespace,
                        "metadata": old.metadata if metadata is None else metadata,
                        "importance": old.importance if importance is None else importance,
                    }
                )
                changes = {
                    "text": item.text,
                    "metadata": item.metadata,
                    "importance": item.importance,
                }
                if text is not None and text != old.text:
                    changes["embedding"] = records.embed_items([item], self.embedder, self.dim)[0]
            if pinned is not None:
                changes["pinned"] = bool(pinned)
            bump = any(k != "pinned" for k in changes)
            new = records.edited(old, changes, self.clock(), bump=bump)
            self._put(old.tier, [new])
            return new

    def _put(self, tier: TierName, memories: Sequence[Memory]) -> None:
        self._writable().tiers[tier].put(schema.from_memories(self.dim, memories))

    def delete(self, id: str) -> bool:
        """Delete one memory; False if it did not exist."""
        return self.delete_many([id]) == 1

    def delete_many(self, ids: Iterable[str]) -> int:
        """Delete memories by id; returns how many existed."""
        b = self._writable()
        with self._mutex:
            rows = self._find(ids)
            found = [(tier, t.column("id").to_pylist()) for tier, t in rows]
            for _, gone in found:
                self.hits.drop(gone)
            n = sum(b.tiers[tier].delete(gone) for tier, gone in found)
            events = [
                Action(id=i, namespace=ns, action="delete", src=tier, reason="deleted by the user")
                for tier, t in rows
                for i, ns in zip(t["id"].to_pylist(), t["namespace"].to_pylist(), strict=True)
            ]
            self._log_user("user", events)
            return n

    def forget(self, *, namespace: str) -> int:
        """Erase a whole namespace from every tier; returns how many memories it had."""
        check_namespace(namespace)
        b = self._writable()
        with self._mutex:
            cold = b.l3.columns(["id"], namespace)
            gone = [i for t in b.l2.scan(namespace) for i in t["id"].to_pylist()]
            gone += cold["id"].to_pylist() if cold is not None else []
            n = sum(b.tiers[t].forget(namespace) for t in TIERS)
            self.hits.drop(gone)  # no trace of the namespace in the hit log ...
            self.hits.save()
            b.l3.checkpoint()  # ... or in L3's persisted access stats
            self.types.forget(namespace)
            reason = f"forget(namespace={namespace!r}): {n} memories"
            # src "all" is not a TierName: built unvalidated, it only feeds the events log.
            event: dict[str, Any] = {"id": "*", "namespace": namespace, "action": "forget"}
            event |= {"src": "all", "dst": None, "reason": reason}
            self._log_user("forget", [Action.model_construct(**event)])
            return n

    def _check_supersedes(self, item: MemoryIn) -> None:
        try:
            old = self._find_one(str(item.supersedes))
        except NotFound:
            raise ValidationError(f"no memory {item.supersedes!r}", field="supersedes") from None
        if old.namespace != item.namespace:
            raise ValidationError("must name a memory of the same namespace", field="supersedes")

    def _supersede(self, old_id: str, new_id: str) -> None:
        with self._mutex:
            old = self._find_one(old_id)
            self._put(
                old.tier, [records.edited(old, {"superseded_by": new_id}, self.clock(), bump=False)]
            )
            self.mover.move(old.tier, "l3", [old_id])

    def versions(self, name: str, *, namespace: str) -> list[Memory]:
        """Every version of the procedure `name` in `namespace`, newest first."""
        check_namespace(namespace)
        return self.types.versions(name, namespace)

    def rollback(self, name: str, *, namespace: str, version: int) -> Memory:
        """Make `version` of a procedure current again (as a new, newest version)."""
        check_namespace(namespace)
        self._writable()
        return self.types.rollback(name, namespace, version)


def _with_ttl(item: MemoryIn, ttl: timedelta | None) -> MemoryIn:
    """`item` with its kind's default `ttl` when it has none."""
    return item if item.ttl is not None or ttl is None else item.model_copy(update={"ttl": ttl})
