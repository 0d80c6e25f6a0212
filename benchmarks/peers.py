"""What users would pick instead: chromadb, qdrant-client local mode, lancedb.

Same data as the core suite (its N x 384-d unit vectors, texts and
Zipf-sized namespaces, seed 7), same queries (the first `--peer-queries` of
the core suite's, each searched within its own namespace), same k=10, one
query at a time. Each peer through its documented, idiomatic API, in a
temporary directory:

- **chromadb** `PersistentClient(path)`, one collection (cosine HNSW, no
  embedding function: vectors are given), `add(ids, embeddings, documents,
  metadatas={"namespace": ...})`, `query(query_embeddings, n_results=10,
  where={"namespace": ns})`;
- **qdrant-client** local mode `QdrantClient(path=...)` (mem0's default
  vector store), one cosine collection, `upsert(Batch(ids, vectors,
  payloads={"namespace", "text"}))`, `query_points(query, query_filter=
  Filter(must=[FieldCondition("namespace", MatchValue(ns))]), limit=10)`;
- **lancedb** `connect(path)`, one table (id, namespace, text, vector),
  `create_table` then `add` per batch; after ingest `optimize()` (compaction
  of the per-batch fragments, as its docs advise after many small appends)
  and a BITMAP scalar index on namespace (both timed, not in the ingest rate);
  no vector index (exact: under ~100k rows its docs suggest brute force);
  `search(q).distance_type("cosine").where("namespace = '...'",
  prefilter=True).limit(10)`.

Ingest: batches of 1,000 with precomputed vectors; rate = 1,000 / median
batch time (as core's). Search: p50/p99 over the queries after one untimed
warm-up query; recall@10 against numpy exact per namespace (the core
suite's truth). tiermem's figures are the core suite's from the same process
on the same data and queries: ingest = `add_many` into L1, search = L1+L2
(`search.deep_below=-1`) after the L1 -> L2 move; its p50/p99 are taken over
the same queries as the peers'. A peer that fails to import or run is
recorded with the error, never given numbers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from benchmarks import core

# lance logs a deprecation warning per query for `.select([...])` without `_distance`.
os.environ.setdefault("LANCE_LOG", "error")

PEERS = ("chromadb", "qdrant", "lancedb")
MODULES = {"chromadb": "chromadb", "qdrant": "qdrant_client", "lancedb": "lancedb"}
DISTS = {"chromadb": "chromadb", "qdrant": "qdrant-client", "lancedb": "lancedb"}
# What tiermem does that a peer does not, as "—" with the reason.
CAPABILITIES = {
    "tiers": "one store: no hot/warm/cold tiers and no policy-driven moves between them",
    "sql": "no SQL over memories (filter expressions only)",
    "consolidation": "no consolidation of episodes into semantic memories (the store keeps "
    "what it is given; mem0 does this in its LLM layer, not in the vector store)",
}


class Chroma:
    def __init__(self, root: Path, dim: int) -> None:
        import chromadb

        self.client = chromadb.PersistentClient(
            path=str(root), settings=chromadb.config.Settings(anonymized_telemetry=False)
        )
        try:
            self.col = self.client.create_collection(
                "bench", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
            )
        except TypeError:  # older API: space in the metadata
            self.col = self.client.create_collection(
                "bench", metadata={"hnsw:space": "cosine"}, embedding_function=None
            )

    def add(self, rows: np.ndarray, vecs: np.ndarray, texts: list[str], nss: list[str]) -> None:
        self.col.add(
            ids=[str(r) for r in rows.tolist()],
            embeddings=vecs,
            documents=texts,
            metadatas=[{"namespace": ns} for ns in nss],
        )

    def search(self, q: np.ndarray, ns: str) -> list[int]:
        res = self.col.query(
            query_embeddings=[q], n_results=core.K, where={"namespace": ns}, include=["distances"]
        )
        return [int(i) for i in res["ids"][0]]

    def close(self) -> None:
        return None


class Qdrant:
    def __init__(self, root: Path, dim: int) -> None:
        from qdrant_client import QdrantClient, models

        self.models = models
        self.client = QdrantClient(path=str(root))
        self.client.create_collection(
            "bench",
            vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
        )

    def add(self, rows: np.ndarray, vecs: np.ndarray, texts: list[str], nss: list[str]) -> None:
        payloads = [{"namespace": ns, "text": t} for ns, t in zip(nss, texts, strict=True)]
        self.client.upsert(
            "bench",
            points=self.models.Batch(ids=rows.tolist(), vectors=vecs.tolist(), payloads=payloads),
        )

    def search(self, q: np.ndarray, ns: str) -> list[int]:
        m = self.models
        flt = m.Filter(must=[m.FieldCondition(key="namespace", match=m.MatchValue(value=ns))])
        res = self.client.query_points(
            "bench", query=q.tolist(), query_filter=flt, limit=core.K, with_payload=False
        )
        return [int(p.id) for p in res.points]

    def close(self) -> None:
        self.client.close()


class Lance:
    def __init__(self, root: Path, dim: int) -> None:
        import lancedb

        self.db = lancedb.connect(str(root))
        self.dim = dim
        self.tbl: Any = None

    def add(self, rows: np.ndarray, vecs: np.ndarray, texts: list[str], nss: list[str]) -> None:
        flat = pa.array(vecs.astype(np.float32).reshape(-1))
        table = pa.table(
            {
                "id": pa.array(rows.astype(np.int64)),
                "namespace": pa.array(nss, pa.string()),
                "text": pa.array(texts, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(flat, self.dim),
            }
        )
        if self.tbl is None:
            self.tbl = self.db.create_table("bench", data=table)
        else:
            self.tbl.add(table)

    def finish(self) -> dict[str, float]:
        t0 = time.perf_counter()
        self.tbl.optimize()
        t1 = time.perf_counter()
        self.tbl.create_scalar_index("namespace", index_type="BITMAP")
        return {"optimize_s": t1 - t0, "scalar_index_s": time.perf_counter() - t1}

    def search(self, q: np.ndarray, ns: str) -> list[int]:
        res = (
            self.tbl.search(q, vector_column_name="vector")
            .distance_type("cosine")
            .where(f"namespace = '{ns}'", prefilter=True)
            .limit(core.K)
            .select(["id"])
            .to_arrow()
        )
        return [int(i) for i in res["id"].to_pylist()]

    def close(self) -> None:
        return None


class Peer(Protocol):
    """What the harness asks of a peer store (each class above)."""

    def add(self, rows: np.ndarray, vecs: np.ndarray, texts: list[str], nss: list[str]) -> None: ...

    def search(self, q: np.ndarray, ns: str) -> list[int]: ...

    def close(self) -> None: ...


CLASSES: dict[str, Callable[[Path, int], Peer]] = {
    "chromadb": Chroma,
    "qdrant": Qdrant,
    "lancedb": Lance,
}


def version(peer: str) -> str | None:
    try:
        return metadata.version(DISTS[peer])
    except metadata.PackageNotFoundError:
        return None


def installed() -> list[str]:
    import importlib.util

    out = []
    for p in PEERS:
        try:
            if importlib.util.find_spec(MODULES[p]) is not None:
                out.append(p)
        except (ImportError, ValueError):
            continue
    return out


def pct(lat: list[float]) -> dict[str, float]:
    a = np.asarray(lat)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def bench_peer(peer: str, root: Path, n_q: int) -> dict[str, Any]:
    """Ingest the core suite's data into one peer, then time its filtered searches."""
    data = core.LAST["data"]
    queries, q_ns = core.LAST["queries"][:n_q], core.LAST["q_ns"][:n_q]
    truth = core.LAST["found"]["numpy"][:n_q]
    store = CLASSES[peer](root, data.vecs.shape[1])
    out: dict[str, Any] = {"version": version(peer)}
    try:
        secs = []
        n = len(data.texts)
        for start in range(0, n, core.BATCH):
            rows = np.arange(start, min(start + core.BATCH, n))
            nss = [data.names[i] for i in data.ns_of[rows].tolist()]
            texts = [data.texts[i] for i in rows.tolist()]
            dt, _ = core.timed(partial(store.add, rows, data.vecs[rows], texts, nss))
            secs.append(dt)
        out["ingest"] = {
            "per_s": core.BATCH / float(np.median(secs)),
            "total_s": float(sum(secs)),
            "batch_s": {"p50": float(np.median(secs)), "max": float(max(secs))},
        }
        finish = getattr(store, "finish", None)
        if finish is not None:
            out["ingest"]["after_ingest"] = finish()
        names = data.names
        first, _ = core.timed(lambda: store.search(queries[0], names[int(q_ns[0])]))
        lat, found = [], []
        for q, ns in zip(queries, q_ns.tolist(), strict=True):
            dt, rows_found = core.timed(partial(store.search, q, names[ns]))
            lat.append(dt * 1e3)
            found.append(rows_found)
        out["search"] = {
            **pct(lat),
            "first_query_ms": first * 1e3,
            "recall_at_10": core.recall(found, truth),
            "queries": len(lat),
        }
    finally:
        store.close()
    return out


def run(quick: bool, core_report: dict[str, Any], peers: list[str] | None = None) -> dict[str, Any]:
    """Every installed peer on the data of `core_report` (core.LAST must be its run)."""
    n_q = 50 if quick else 200
    tm_lat = core.LAST["lat_ms"]["tiermem"][:n_q]
    tm = {
        "ingest_per_s": core_report["ingest"]["tiermem_per_s"],
        "move_l1_l2_per_s": core_report["move"]["per_s"],
        **pct(tm_lat),
        "recall_at_10": core.recall(
            core.LAST["found"]["tiermem"][:n_q], core.LAST["found"]["numpy"][:n_q]
        ),
    }
    limits = {m: pct(core.LAST["lat_ms"][m][:n_q]) for m in ("numpy", "usearch")}
    results: dict[str, Any] = {}
    have = installed()
    for peer in peers or PEERS:
        if peer not in have:
            results[peer] = {"status": "not installed", "reason": f"{DISTS[peer]} not importable"}
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f"tiermem-bench-{peer}-"))
        t0 = time.perf_counter()
        try:
            r = bench_peer(peer, tmp, n_q)
            r["status"] = "ok"
        except Exception as e:  # record why, never fake numbers
            traceback.print_exc()
            r = {"status": "failed", "reason": f"{type(e).__name__}: {e}", "version": version(peer)}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        r["wall_s"] = time.perf_counter() - t0
        if r["status"] == "ok":
            r["ratios"] = {
                "ingest_tiermem_over_peer": tm["ingest_per_s"] / r["ingest"]["per_s"],
                "search_p50_peer_over_tiermem": r["search"]["p50_ms"] / tm["p50_ms"],
                "search_p99_peer_over_tiermem": r["search"]["p99_ms"] / tm["p99_ms"],
            }
        results[peer] = r
        print(f"peers: {peer}: {summary_line(r)}", flush=True)
    return {
        "n": core_report["n"],
        "dim": core_report["dim"],
        "namespaces": core_report["namespaces"],
        "queries": n_q,
        "k": core.K,
        "tiermem": tm,
        "limits_same_queries": limits,
        "peers": results,
        "capabilities_missing": {p: CAPABILITIES for p in PEERS},
    }


def summary_line(r: dict[str, Any]) -> str:
    if r["status"] != "ok":
        return f"{r['status']}: {r.get('reason')}"
    s = r["search"]
    return (
        f"ingest {r['ingest']['per_s']:,.0f}/s, p50 {s['p50_ms']:.2f} ms, p99 "
        f"{s['p99_ms']:.2f} ms, recall@10 {s['recall_at_10']:.3f} ({r['wall_s']:.0f} s)"
    )
