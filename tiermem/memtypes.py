"""Per-kind write rules: semantic dedupe, procedural versions, rollback.

The engine calls `MemTypes.handles(item)` on every add; the items it claims
(a kind whose policy has ``dedupe:``, or a procedural memory with a
``name``) are written here, under the engine's mutex: `add` one at a
time, `add_many` as a batch (`dedupe_batch`: the same outcome, one write).

**Dedupe** (kinds with ``dedupe: t``, the default policy's ``semantic``):

1. exact duplicates: the text is normalised (lowercased, whitespace
   collapsed, punctuation stripped at both ends) and hashed with its kind
   (sha1) into a per-namespace Redis hash (`Keys.dedupe`). An entry is
   verified on read (same namespace, kind, normalised text, not
   superseded); a stale one is dropped. This path reaches every tier.
2. near duplicates: top-1 search of L1 and L2 (not L3: that is a DuckDB
   scan per write) among current memories of the same kind; cosine >= t.

A hit merges the new memory into the existing one instead of writing a row:
same id, version + 1, metadata merged (new keys added, existing values
kept), importance the max of both, the distinct texts kept in metadata
``_variants`` (at most `MAX_VARIANTS`, oldest dropped), one access recorded.
Items that name ``supersedes`` or a procedure ``name`` are never deduped.

**Procedural versions**: adding under an existing ``name`` in a namespace
writes a new memory with version = current + 1, then supersedes every
other current version (``superseded_by`` = the new id; they go to L3).
A crash between the two leaves two current versions: `current()` picks
the highest version and the next add/rollback supersedes the rest.
`rollback` is append-only: it writes a copy of the chosen version as the
newest one (metadata ``rolled_back_from``) and supersedes the current one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiermem import dedupe_batch, records, schema
from tiermem.errors import NotFound, TierMemError, ValidationError
from tiermem.fields import MAX_METADATA_BYTES
from tiermem.filters import Filter
from tiermem.model import Memory, MemoryIn, TierName

if TYPE_CHECKING:
    from tiermem.engine import Engine

MAX_VARIANTS = 10  # distinct texts kept in a merged memory's `_variants`
MAX_VARIANT_CHARS = 1_000  # each variant is cut to this many characters
VARIANTS = "_variants"
ROLLED_BACK_FROM = "rolled_back_from"
_SPACE = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$", re.UNICODE)


def normalise(text: str) -> str:
    """Lowercase, whitespace collapsed, punctuation stripped at both ends.

    >>> normalise("  Alice   likes TEA! ")
    'alice likes tea'
    """
    return _EDGE_PUNCT.sub("", _SPACE.sub(" ", text.lower()).strip())


def text_key(kind: str, text: str) -> str:
    """The exact-duplicate key of a text of a kind (sha1 hex)."""
    return hashlib.sha1(f"{kind}\0{normalise(text)}".encode()).hexdigest()


def merged_metadata(
    old: dict[str, Any], new: dict[str, Any], old_text: str, new_text: str
) -> dict[str, Any]:
    """Existing keys kept, new ones added, distinct texts in `_variants` (bounded).

    >>> merged_metadata({"a": 1}, {"a": 2, "b": 3}, "x", "y")
    {'a': 1, 'b': 3, '_variants': ['x', 'y']}
    """
    out = {**{k: v for k, v in new.items() if k != VARIANTS}, **old}
    seen = old.get(VARIANTS)
    variants = [str(v) for v in seen] if isinstance(seen, list) and seen else [old_text]
    variants = [v[:MAX_VARIANT_CHARS] for v in variants]
    if new_text[:MAX_VARIANT_CHARS] not in variants:
        variants.append(new_text[:MAX_VARIANT_CHARS])
    variants = variants[-MAX_VARIANTS:]
    while True:  # stay within the metadata size limit: drop the oldest variants first
        out[VARIANTS] = variants
        if _size(out) <= MAX_METADATA_BYTES or len(variants) <= 1:
            break
        variants = variants[1:]
    if _size(out) > MAX_METADATA_BYTES:  # still too big: the new keys give way
        out = {**old, VARIANTS: variants[-1:]}
    return out


def _size(meta: dict[str, Any]) -> int:
    return len(json.dumps(meta, separators=(",", ":")).encode())


class MemTypes:
    """Dedupe, versions and rollback over one engine (see module doc)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- which items are ours ------------------------------------------------

    def threshold(self, item: MemoryIn) -> float | None:
        """The dedupe threshold for `item`, or None when it is not deduplicated."""
        if item.supersedes is not None or item.name is not None:
            return None
        return self.engine.policy.for_kind(item.kind).dedupe

    def handles(self, item: MemoryIn) -> bool:
        return self.threshold(item) is not None or (
            item.kind == "procedural" and item.name is not None
        )

    # -- adding ----------------------------------------------------------------

    def add(self, item: MemoryIn) -> Memory:
        """Write one claimed item (dedupe or new version); returns the stored memory."""
        e = self.engine
        with e._mutex:
            if (t := self.threshold(item)) is not None:
                hit = self._exact(item)
                if hit is None:
                    item = self._with_vector(item)
                    hit = self._near(item, t)
                if hit is not None:
                    return self._merge(hit, item)
                memory = self._write(item, None)
                self.index([memory])
                return memory
            return self._add_version(item)

    def add_many(self, items: Sequence[MemoryIn]) -> list[Memory | TierMemError]:
        """`add` for each item, with the outcome of adding them in order (later items
        dedupe against earlier ones); texts are embedded in one call first and
        deduplicated kinds go through `dedupe_batch` (one write for the batch)."""
        need = [i for i, m in enumerate(items) if m.embedding is None]
        prepared = list(items)
        if need:
            vecs = records.embed_items(
                [items[i] for i in need], self.engine.embedder, self.engine.dim
            )
            for i, vec in zip(need, vecs, strict=True):
                prepared[i] = items[i].model_copy(update={"embedding": vec})
        out: list[Memory | TierMemError | None] = [None] * len(prepared)
        deduped = [i for i, item in enumerate(prepared) if self.threshold(item) is not None]
        with self.engine._mutex:
            if deduped:
                got = dedupe_batch.add_deduped(self, [prepared[i] for i in deduped])
                for i, result in zip(deduped, got, strict=True):
                    out[i] = result
            for i, item in enumerate(prepared):  # named procedures: one version at a time
                if out[i] is None:
                    try:
                        out[i] = self.add(item)
                    except TierMemError as exc:
                        out[i] = exc
        return dedupe_batch.filled(out)

    def _with_vector(self, item: MemoryIn) -> MemoryIn:
        vec = records.embed_items([item], self.engine.embedder, self.engine.dim)[0]
        return item.model_copy(update={"embedding": vec})

    def _write(self, item: MemoryIn, version: int | None) -> Memory:
        memories, errors = self.engine._write(
            [item], versions=None if version is None else [version]
        )
        if errors:
            raise next(iter(errors.values()))
        return memories[0]

    # -- dedupe ----------------------------------------------------------------

    def _exact(self, item: MemoryIn) -> Memory | None:
        """The memory the hash index names for `item`'s text, verified; else None."""
        return self._exact_many([item], [text_key(item.kind, item.text)])[0]

    def _valid_exact(self, m: Memory | None, item: MemoryIn, key: str) -> bool:
        """Whether an index entry's memory really is a current exact duplicate of `item`."""
        return (
            m is not None
            and m.namespace == item.namespace
            and m.kind == item.kind
            and m.superseded_by is None
            and text_key(m.kind, m.text) == key
            and (m.expires_at is None or m.expires_at > self.engine.clock())
        )

    def _near(self, item: MemoryIn, threshold: float) -> Memory | None:
        """The most similar current memory of the same kind in L1/L2, if >= threshold."""
        best = self._near_scored(item)
        return None if best is None or best[0] < threshold else best[1]

    def _near_scored(self, item: MemoryIn) -> tuple[float, Memory] | None:
        """The most similar current memory of the same kind in L1/L2, and its score."""
        assert item.embedding is not None
        e = self.engine
        flt = Filter(kinds=frozenset({item.kind}), now=e.clock())
        best: tuple[float, TierName, pa.Table] | None = None
        for tier in ("l1", "l2"):
            rows = e.backends.tiers[tier].search(item.namespace, item.embedding, 1, flt)
            if rows.num_rows == 0:
                continue
            score = float(rows.column("_score")[0].as_py())
            if best is None or score > best[0]:
                best = (score, tier, rows)
        if best is None:
            return None
        return best[0], schema.to_memories(best[2].drop_columns(["_score"]), best[1])[0]

    def _merge(self, old: Memory, item: MemoryIn) -> Memory:
        """Fold `item` into `old` in its tier: version + 1, one access (module doc)."""
        e, now = self.engine, self.engine.clock()
        new = records.edited(old, self.merge_changes(old, item), now, bump=True)
        e._put(old.tier, [new])
        self.index([new])
        return e._accessed([new], now)[0]

    @staticmethod
    def merge_changes(old: Memory, item: MemoryIn) -> dict[str, Any]:
        """The fields `old` takes when `item` merges into it."""
        return {
            "metadata": merged_metadata(old.metadata, item.metadata, old.text, item.text),
            "importance": max(old.importance, item.importance),
            "pinned": old.pinned or item.pinned,
        }

    def index(self, memories: Sequence[Memory]) -> None:
        """Put memories in their namespace's exact-duplicate index (one round trip)."""
        if not memories:
            return
        l1 = self.engine.backends.l1
        pipe = l1.client.pipeline(transaction=False)
        for m in memories:
            pipe.hset(l1.keys.dedupe(m.namespace), text_key(m.kind, m.text), m.id)
        pipe.execute()

    def lookup(self, items: Sequence[MemoryIn]) -> list[dedupe_batch.Lookup]:
        """Each item's verified exact match, else its best near match in L1/L2."""
        keys = [text_key(item.kind, item.text) for item in items]
        exact = self._exact_many(items, keys)
        out = []
        for item, key, hit in zip(items, keys, exact, strict=True):
            near = None if hit is not None else self._near_scored(item)
            out.append(dedupe_batch.Lookup(key, hit, near))
        return out

    def _exact_many(self, items: Sequence[MemoryIn], keys: list[str]) -> list[Memory | None]:
        """`_exact` for many items: one HGET round trip, one lookup of the ids."""
        l1 = self.engine.backends.l1
        pipe = l1.client.pipeline(transaction=False)
        for item, key in zip(items, keys, strict=True):
            pipe.hget(l1.keys.dedupe(item.namespace), key)
        raw = pipe.execute()
        ids = [None if r is None else (r.decode() if isinstance(r, bytes) else str(r)) for r in raw]
        found: dict[str, Memory] = {}
        for tier, table in self.engine._find([i for i in ids if i is not None]):
            found.update((m.id, m) for m in schema.to_memories(table, tier))
        out: list[Memory | None] = []
        for item, key, id_ in zip(items, keys, ids, strict=True):
            m = None if id_ is None else found.get(id_)
            if id_ is not None and not self._valid_exact(m, item, key):
                l1.client.hdel(l1.keys.dedupe(item.namespace), key)
                m = None
            out.append(m)
        return out

    def forget(self, namespace: str) -> None:
        """Drop a namespace's dedupe index (after `forget`)."""
        l1 = self.engine.backends.l1
        l1.client.delete(l1.keys.dedupe(namespace))

    # -- procedural versions -------------------------------------------------

    def _add_version(self, item: MemoryIn) -> Memory:
        assert item.name is not None
        every = self._all(item.name, item.namespace)
        current = [m for m in every if m.superseded_by is None]
        latest = max((m.version for m in every), default=0)
        memory = self._write(item, latest + 1 if latest else None)
        for old in current:
            if old.id != item.supersedes:  # an explicit supersedes is done by the engine
                self.engine._supersede(old.id, memory.id)
        return memory

    def _all(self, name: str, namespace: str) -> list[Memory]:
        """Every procedural memory named `name` in `namespace`, any tier, one copy each."""
        e = self.engine
        b = e.backends
        ids = b.l1.named(namespace, "procedural", name) + b.l2.named(namespace, "procedural", name)
        cold = b.l3.columns(["id", "kind", "name"], namespace)
        if cold is not None and cold.num_rows:
            mask = pc.and_(pc.equal(cold["kind"], "procedural"), pc.equal(cold["name"], name))
            ids += cold.filter(pc.fill_null(mask, False))["id"].to_pylist()
        out: list[Memory] = []
        for tier, table in e._find(ids):
            out += schema.to_memories(table, tier)
        return out

    def _current_all(self, name: str, namespace: str) -> list[Memory]:
        return [m for m in self._all(name, namespace) if m.superseded_by is None]

    def versions(self, name: str, namespace: str) -> list[Memory]:
        """Every version of a procedure, newest first (version, then id)."""
        return sorted(self._all(name, namespace), key=lambda m: (m.version, m.id), reverse=True)

    def current(self, name: str, namespace: str) -> Memory | None:
        """The current version (the highest not superseded), or None."""
        live = self._current_all(name, namespace)
        return max(live, key=lambda m: (m.version, m.id)) if live else None

    def rollback(self, name: str, namespace: str, version: int) -> Memory:
        """Make `version` current again by appending a copy of it (module doc)."""
        e = self.engine
        with e._mutex:
            every = self.versions(name, namespace)
            if not every:
                raise NotFound(f"no procedure {name!r} in namespace {namespace!r}")
            target = next((m for m in every if m.version == version), None)
            if target is None:
                have = ", ".join(str(m.version) for m in every)
                raise ValidationError(
                    f"no version {version} of {name!r} (have {have})", field="version"
                )
            current = self.current(name, namespace)
            if current is not None and current.id == target.id:
                return current
            item = MemoryIn(
                text=target.text,
                namespace=namespace,
                kind="procedural",
                metadata={**target.metadata, ROLLED_BACK_FROM: version},
                importance=target.importance,
                embedding=np.asarray(target.embedding, dtype=np.float32),
                pinned=target.pinned,
                name=name,
            )
            return self._add_version(item)
