"""Every Redis key tiermem uses, in one place.

Keys carry the namespace as a hash tag, ``<prefix>:{<ns>}:…``, so all of a
namespace's keys live in one Redis Cluster slot and multi-key changes within
a namespace stay atomic there. The prefix is per store (several stores can
share one Redis).

>>> k = Keys("tm:ab12")
>>> k.record("user:alice", "0190-x")
'tm:ab12:{user:alice}:m:0190-x'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str

    def record(self, ns: str, id_: str) -> str:
        """HASH: one memory's fields."""
        return f"{self.prefix}:{{{ns}}}:m:{id_}"

    def recency(self, ns: str) -> str:
        """ZSET: id -> last access (µs since epoch); also the namespace's id index."""
        return f"{self.prefix}:{{{ns}}}:recency"

    def frequency(self, ns: str) -> str:
        """ZSET: id -> access count."""
        return f"{self.prefix}:{{{ns}}}:frequency"

    def kind_index(self, ns: str, kind: str) -> str:
        """ZSET: id -> when it entered L1 (µs), one per kind: capacity counts and FIFO order."""
        return f"{self.prefix}:{{{ns}}}:kind:{kind}"

    def version(self, ns: str) -> str:
        """STRING counter: bumped on every write to the namespace (cache invalidation)."""
        return f"{self.prefix}:{{{ns}}}:ver"

    def dedupe(self, ns: str) -> str:
        """HASH: sha1 of (kind, normalised text) -> id: the exact-duplicate index of
        deduplicated kinds (memtypes.py); entries are verified on read, so stale ones
        (deleted, edited, superseded memories) are harmless and dropped when met."""
        return f"{self.prefix}:{{{ns}}}:dedupe"

    def namespaces(self) -> str:
        """SET: namespaces with data in L1."""
        return f"{self.prefix}:namespaces"

    def directory(self) -> str:
        """HASH: id -> namespace, so `get(id)` needs no namespace."""
        return f"{self.prefix}:dir"

    def job_lock(self, job: str) -> str:
        """STRING with TTL: the cross-process lock of a lifecycle job."""
        return f"{self.prefix}:lock:{job}"

    def job_latch(self, job: str, period: int) -> str:
        """STRING with TTL (~2 periods): set once a lifecycle job's period has been claimed."""
        return f"{self.prefix}:latch:{job}:{period}"

    def pattern(self) -> str:
        """Glob matching every key of this store (for forget-all and tests)."""
        return f"{self.prefix}:*"
