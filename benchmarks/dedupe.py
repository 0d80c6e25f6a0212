"""Semantic dedupe on write: `add_many` of facts, batched vs one `add` at a time.

Data: N semantic facts (384-d random unit vectors, seed 11) over 5
namespaces; 10% repeat an earlier fact's text in other case/punctuation
(exact duplicates), 20% are near duplicates of an earlier fact (cosine
about 0.997) in the same namespace, the rest are new. The default policy dedupes `semantic` at
cosine >= 0.95.

Measured, each in a fresh store on the shared Redis:

1. `add_many` in batches of 1,000 (tiermem's batched dedupe);
2. the same facts through `add`, one at a time (what `add_many` did
   before it was batched: every write invalidated L1's search copy);
3. the limit: `add_many` of the same items as `episodic` (no dedupe).

Both dedupe paths must end with the same number of memories.

    python -m benchmarks.dedupe [--quick]        # N 5,000 (quick: 500)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import redis

import tiermem

REDIS_URL = "redis://127.0.0.1:6379/0"
DIM = 384
BATCH = 1000


def make_items(n: int, seed: int = 11) -> list[dict[str, Any]]:
    """Facts with exact and near duplicates of earlier ones (module doc)."""
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    texts = [f"fact {i} about topic {i % 97}" for i in range(n)]
    ns = [i % 5 for i in range(n)]
    for i in range(1, n):
        roll = rng.random()
        j = int(rng.integers(0, i))
        if roll < 0.1:  # exact duplicate text (other case, punctuation), same tenant
            texts[i], vecs[i], ns[i] = texts[j].upper() + ".", vecs[j], ns[j]
        elif roll < 0.3:  # near duplicate vector, same tenant
            v = vecs[j] + 0.07 * rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)
            vecs[i], ns[i] = v / np.linalg.norm(v), ns[j]
    return [
        {"text": t, "namespace": f"ns{ns[i]}", "kind": "semantic", "embedding": vecs[i]}
        for i, t in enumerate(texts)
    ]


def _store(tmp: str, name: str, prefix: str) -> tiermem.Engine:
    return tiermem.open(
        Path(tmp) / name,
        embedder=tiermem.HashingEmbedder(DIM),
        **_overrides(prefix, name),
    )


def _overrides(prefix: str, name: str) -> dict[str, Any]:
    return {"l1.url": REDIS_URL, "l1.prefix": f"{prefix}:{name}"}


def _timed(mem: tiermem.Engine, items: list[dict[str, Any]], how: str) -> dict[str, Any]:
    start = time.perf_counter()
    if how == "one":
        for item in items:
            mem.add(**item)
    else:
        for s in range(0, len(items), BATCH):
            res = mem.add_many(items[s : s + BATCH])
            if not res.ok:
                raise SystemExit(f"add_many failed: {next(iter(res.errors.values()))}")
    secs = time.perf_counter() - start
    return {"per_s": len(items) / secs, "seconds": secs, "memories": sum(1 for _ in mem.scan())}


def run(quick: bool, out: Path | None = None) -> dict[str, Any]:
    """The three measurements; Redis keys and temp dirs cleaned up."""
    n = 500 if quick else 5_000
    items = make_items(n)
    prefix = f"bench-dedupe:{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    res: dict[str, Any] = {"n": n, "namespaces": 5, "dim": DIM, "batch": BATCH}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, how, data in (
                ("batched", "many", items),
                ("one_by_one", "one", items),
                ("limit_episodic", "many", [{**i, "kind": "episodic"} for i in items]),
            ):
                with _store(tmp, name, prefix) as mem:
                    res[name] = _timed(mem, data, how)
    finally:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    res["same_outcome"] = res["batched"]["memories"] == res["one_by_one"]["memories"]
    res["speedup_vs_one_by_one"] = res["batched"]["per_s"] / res["one_by_one"]["per_s"]
    res["ratio_to_limit"] = res["batched"]["per_s"] / res["limit_episodic"]["per_s"]
    if out is not None:
        out.write_text(json.dumps(res, indent=2))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    print(json.dumps(run(args.quick, args.out), indent=2))


if __name__ == "__main__":
    main()
