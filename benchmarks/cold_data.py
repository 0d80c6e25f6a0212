"""The synthetic memories of benchmarks/cold.py (the rule, so figures can be reproduced).

- N memories, 384-d, over 100 namespaces whose sizes follow Zipf (s = 1):
  the largest holds N / H_100 (19%), the 50th ~0.4%;
- `created_at` uniform over 2025 (one year); ids are UUIDv7 of that time, as
  the engine makes them; rows of a namespace sorted by id;
- vectors are clustered, not noise: a pool of 1,000 unit "topic" vectors;
  each namespace uses 20 of them, and a memory is its topic plus Gaussian
  noise of norm 0.75, unit-normalised (cosine ~0.8 to its topic, ~0.64 to a
  sibling, ~0 across topics); texts are 8-16 word sentences naming the topic
  (mean ~92 bytes); kinds 80/15/5% episodic/semantic/procedural;
- queries are a tenant's topics plus the same noise.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from tiermem.schema import TS, schema

DIM = 384
NAMESPACES = 100
TOPICS, TOPICS_PER_NS, NOISE = 1_000, 20, 0.75
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_MS = 365 * 86_400_000
_VOCABULARY = (
    "asked told remembered mentioned planned booked moved bought fixed cancelled "
    "liked disliked shared visited called met finished started reviewed updated "
    "the a my our their new old weekly monthly urgent shared private draft final "
    "meeting trip invoice report doctor flight recipe garden project budget birthday "
    "contract lesson concert deadline ticket account password address order refund"
)
WORDS = _VOCABULARY.split()


# -- data ----------------------------------------------------------------------------


def ns_sizes(n: int, k: int = NAMESPACES) -> list[int]:
    """Zipf (s = 1) sizes of `k` namespaces summing to `n`, each at least 1."""
    w = 1.0 / np.arange(1, k + 1)
    sizes = np.maximum(1, np.floor(n * w / w.sum())).astype(int)
    sizes[0] += n - int(sizes.sum())
    return [int(s) for s in sizes]


def uuid7(ms: np.ndarray, rng: np.random.Generator) -> list[str]:
    """UUIDv7 strings of the millisecond timestamps `ms` (as tiermem.ids.new_id)."""
    n = len(ms)
    b = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    b[:, :6] = ms.astype(">u8").view(np.uint8).reshape(n, 8)[:, 2:]
    b[:, 6] = (b[:, 6] & 0x0F) | 0x70
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    h = b.tobytes().hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
        f"{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def unit(m: np.ndarray) -> np.ndarray:
    out: np.ndarray = (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)
    return out


def namespace_rows(
    rng: np.random.Generator, ns: str, size: int, topics: np.ndarray, centres: np.ndarray
) -> pa.Table:
    """`size` memories of `ns` (see the module docstring for the rule)."""
    ms = np.sort(rng.integers(0, YEAR_MS, size)) + int(YEAR_START.timestamp() * 1000)
    topic = rng.choice(topics, size)
    noise = rng.standard_normal((size, DIM), dtype=np.float32) * (NOISE / np.sqrt(DIM))
    vec = unit(centres[topic] + noise)
    words = rng.integers(0, len(WORDS), (size, 16))
    lengths = rng.integers(8, 17, size)
    text = [
        f"topic{t} " + " ".join(WORDS[w] for w in row[:ln])
        for t, row, ln in zip(topic.tolist(), words.tolist(), lengths.tolist(), strict=True)
    ]
    kinds = np.array(["episodic", "semantic", "procedural"])[
        rng.choice(3, size, p=[0.8, 0.15, 0.05])
    ]
    us = pa.array(ms * 1000, pa.int64()).cast(TS)
    cols: dict[str, pa.Array] = {
        "id": pa.array(uuid7(ms, rng), pa.string()),
        "namespace": pa.array([ns] * size, pa.string()),
        "kind": pa.array(kinds, pa.string()),
        "text": pa.array(text, pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), DIM),
        "metadata": pa.array([f'{{"source":"chat","topic":{t}}}' for t in topic.tolist()]),
        "importance": pa.array(rng.random(size), pa.float64()),
        "created_at": us,
        "updated_at": us,
        "last_accessed_at": us,
        "access_count": pa.array(np.zeros(size, np.int64)),
        "expires_at": pa.nulls(size, TS),
        "pinned": pa.array(np.zeros(size, bool)),
        "version": pa.array(np.ones(size, np.int64)),
        "source_ids": pa.array([[]] * size, pa.list_(pa.string())),
        "superseded_by": pa.nulls(size, pa.string()),
        "name": pa.nulls(size, pa.string()),
        "tiered_at": us,
    }
    s = schema(DIM)
    return pa.Table.from_arrays([cols[f.name] for f in s], schema=s)


def generate(n: int, seed: int = 0) -> tuple[list[pa.Table], np.ndarray, list[np.ndarray]]:
    """Per-namespace tables (largest first), the topic centres and each namespace's topics."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((TOPICS, DIM), dtype=np.float32))
    tables, topics = [], []
    for i, size in enumerate(ns_sizes(n)):
        own = rng.choice(TOPICS, TOPICS_PER_NS, replace=False)
        tables.append(namespace_rows(rng, f"tenant-{i:03d}", size, own, centres))
        topics.append(own)
    return tables, centres, topics


def queries(rng: np.random.Generator, centres: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """`k` query vectors near topics of one namespace (as a user's question would be)."""
    pick = centres[rng.choice(own, k)]
    return unit(pick + rng.standard_normal(pick.shape, dtype=np.float32) * (NOISE / np.sqrt(DIM)))
