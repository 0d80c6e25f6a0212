"""L3 at scale: 1M memories in the cold tier, next to one unpartitioned Parquet file.

Data: N memories (default 1,000,000), 384-d, over 100 tenants of Zipf
sizes, a year of timestamps, clustered vectors, short texts; the rule is in
benchmarks/cold_data.py.

Write path: an Engine is opened on a fresh data dir (format.json, Redis
prefix) and each namespace is written with ONE `put` of its cold tier (so
one file per namespace, the layout `compact` leaves); the store then opens
as a normal Engine. Not the L1 ingest path (far slower at 1M).

Measured (median over repeats, with min and max), each next to the same
DuckDB query over ONE unpartitioned Parquet file of the same rows (in id
order, same zstd level and row groups; vectors as DuckDB's FLOAT lists,
the layout the tier wrote before its bytes layout), timed in the same run:
- count of one tenant, and one tenant's memories of one month
  (`mem.sql(..., namespace=t)` vs `WHERE namespace = t` on the file);
- top-10 cosine search over one tenant: the engine's cold search path
  (`ColdTier.search`) and the same SQL through the `cold` view;
- top-10 cosine search over all tenants (SQL through `cold`).
Tenants: the largest and the median one. Then bytes per memory, write
throughput and one-tenant search latency for each vector precision and zstd
level (1, 3, 9) on the largest tenant's rows; get-by-id latency with 10k vs
100k rows per row group; and the whole store compacted to float16 (the
`compact` job) with its search latency and its top-10 agreement with float32.

The host is shared (2 cores): the load average at start and end is in the
JSON; ratios interleave both sides, repeat by repeat, to share the noise.

    python -m benchmarks.cold [--quick] [--n N] [--out PATH]   # quick: 20,000 rows
    python -m benchmarks run cold [--quick]                    # through the harness
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import redis

import tiermem
from benchmarks.cold_data import DIM, NAMESPACES, generate, queries
from tiermem.filters import Filter
from tiermem.tiers.cold import ColdTier
from tiermem.tiers.cold_files import data_options, storage_schema

RESULTS = Path(__file__).parent / "results"
URL = "redis://127.0.0.1:6379/0"


# -- timing --------------------------------------------------------------------------


def stats(times: list[float]) -> dict[str, float]:
    """Median, min and max of `times`, in ms."""
    ms = np.array(times) * 1e3
    return {"median_ms": float(np.median(ms)), "min_ms": float(ms.min()), "max_ms": float(ms.max())}


def compare(
    engine: Callable[[int], object], base: Callable[[int], object], repeats: int
) -> dict[str, Any]:
    """Both sides interleaved, one warm-up each; ratio = engine median / baseline median."""
    engine(0), base(0)
    te: list[float] = []
    tb: list[float] = []
    for r in range(repeats):
        for fn, into in ((engine, te), (base, tb)):
            t0 = time.perf_counter()
            fn(r)
            into.append(time.perf_counter() - t0)
    e, b = stats(te), stats(tb)
    return {"engine": e, "baseline": b, "ratio": e["median_ms"] / b["median_ms"]}


def _searcher(
    tier: ColdTier, ns: str, qs: np.ndarray, flt: Filter | None = None
) -> Callable[[int], object]:
    """Search r: tier's top-10 of namespace `ns` for query `qs[r]`."""
    return lambda r: tier.search(ns, qs[r], 10, flt or Filter())


def _get_one(tier: ColdTier, ids: list[str], r: int) -> object:
    return tier.get([ids[r]])


def timed(fn: Callable[[int], object], repeats: int) -> dict[str, float]:
    fn(0)
    out = []
    for r in range(repeats):
        t0 = time.perf_counter()
        fn(r)
        out.append(time.perf_counter() - t0)
    return stats(out)


def literal(q: np.ndarray) -> str:
    return "[" + ", ".join(f"{x:.7g}" for x in q.tolist()) + f"]::FLOAT[{DIM}]"


# -- phases --------------------------------------------------------------------------


def open_engine(path: Path, url: str, prefix: str, **l3: Any) -> tiermem.Engine:
    overrides: dict[str, Any] = {"l1.url": url, "l1.prefix": prefix, "embedding.dim": DIM}
    overrides |= {f"l3.{k}": v for k, v in l3.items()}
    return tiermem.open(path, embedder=tiermem.HashingEmbedder(DIM), **overrides)


def baseline_connection() -> Any:
    """A plain DuckDB connection with the SQL sandbox's threads and memory limit."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET memory_limit = '2GB'")
    return con


def write_single(tables: list[pa.Table], path: Path, zstd_level: int, row_group: int) -> None:
    """All rows in ONE Parquet file, in id order, with vectors as DuckDB's own list of
    floats: the list layout and encoding the tier wrote before its bytes layout (DuckDB
    cannot score a BLOB without our UDF; cold_files.py)."""
    rows = pa.concat_tables(tables).sort_by("id")
    stored = rows.cast(storage_schema(DIM, "float32", "list"))
    opts = data_options(row_group, "float32", "list", zstd_level)
    pq.write_table(stored, path, compression="zstd", **opts)


def tenant_queries(
    mem: tiermem.Engine, base: Any, single: Path, ns: str, qs: np.ndarray, repeats: int
) -> dict[str, Any]:
    """One tenant's count, month range and top-10 searches, engine vs the single file."""
    l3, flt = mem.backends.l3, Filter(now=datetime.now(UTC))
    src, where = f"read_parquet('{single}')", f"namespace = '{ns}'"
    month = "created_at >= '2025-06-01T00:00:00Z' AND created_at < '2025-07-01T00:00:00Z'"
    rng = f"SELECT id, created_at, text FROM {{src}} WHERE {month}{{ns}} ORDER BY created_at"

    def score(q: np.ndarray) -> str:
        return f"array_cosine_similarity(embedding::FLOAT[{DIM}], {literal(q)}) AS score"

    top = "ORDER BY score DESC, id LIMIT 10"
    # The tier binds its query vector as a parameter; the SQL sides both parse a literal.
    param = f"array_cosine_similarity(embedding::FLOAT[{DIM}], ?::FLOAT[{DIM}]) AS score"
    tier_sql = f"SELECT *, {param} FROM {src} WHERE {where} {top}"
    out = {
        "count": compare(
            lambda r: mem.sql("SELECT count(*) FROM cold", namespace=ns),
            lambda r: base.sql(f"SELECT count(*) FROM {src} WHERE {where}").fetchall(),
            repeats,
        ),
        "time_range": compare(
            lambda r: mem.sql(rng.format(src="cold", ns=""), namespace=ns),
            lambda r: base.sql(rng.format(src=src, ns=f" AND {where}")).to_arrow_table(),
            repeats,
        ),
        "search_tier": compare(
            lambda r: l3.search(ns, qs[r], 10, flt),
            lambda r: base.sql(tier_sql, params=[qs[r].tolist()]).to_arrow_table(),
            repeats,
        ),
        "search_sql": compare(
            lambda r: mem.sql(f"SELECT id, {score(qs[r])} FROM cold {top}", namespace=ns),
            lambda r: base.sql(
                f"SELECT id, {score(qs[r])} FROM {src} WHERE {where} {top}"
            ).to_arrow_table(),
            repeats,
        ),
    }
    # The engine's answer is the single file's answer (same rows, exact search).
    want = base.sql(f"SELECT id, {score(qs[0])} FROM {src} WHERE {where} {top}").fetchall()
    got = l3.search(ns, qs[0], 10, flt)["id"].to_pylist()
    assert got == [r[0] for r in want], (got, want)
    return out


def all_tenants(mem: tiermem.Engine, base: Any, single: Path, qs: np.ndarray, repeats: int) -> Any:
    def sql(src: str, q: np.ndarray) -> str:
        score = f"array_cosine_similarity(embedding::FLOAT[{DIM}], {literal(q)}) AS score"
        return f"SELECT id, namespace, {score} FROM {src} ORDER BY score DESC, id LIMIT 10"

    return {
        "search_sql": compare(
            lambda r: mem.sql(sql("cold", qs[r])),
            lambda r: base.sql(sql(f"read_parquet('{single}')", qs[r])).to_arrow_table(),
            repeats,
        )
    }


def top_ids(l3: ColdTier, ns: str, qs: np.ndarray) -> list[list[str]]:
    flt = Filter(now=datetime.now(UTC))
    return [l3.search(ns, q, 10, flt)["id"].to_pylist() for q in qs]


def agreement(a: list[list[str]], b: list[list[str]]) -> float:
    """Mean overlap@10 of two lists of top-10 id lists."""
    return float(
        np.mean([len(set(x) & set(y)) / max(len(x), 1) for x, y in zip(a, b, strict=True)])
    )


def sweep(table: pa.Table, tmp: Path, qs: np.ndarray, repeats: int) -> list[dict[str, Any]]:
    """Bytes, write rate and search latency of one tenant's rows per precision and level."""
    ns, out, truth = table["namespace"][0].as_py(), [], None
    for precision in ("float32", "float16"):
        for level in (1, 3, 9):
            root = tmp / f"sweep-{precision}-{level}"
            t = ColdTier(
                root, DIM, zstd_level=level, row_group_size=10_000, vector_precision=precision
            )
            t0 = time.perf_counter()
            t.put(table)
            secs = time.perf_counter() - t0
            ids = top_ids(t, ns, qs)
            truth = truth or ids
            out.append(
                {
                    "precision": precision,
                    "zstd_level": level,
                    "bytes_per_memory": t.stats().bytes / table.num_rows,
                    "write_rows_per_s": table.num_rows / secs,
                    "search": timed(_searcher(t, ns, qs), repeats),
                    "top10_agreement_with_float32": agreement(ids, truth),
                }
            )
            t.close()
            shutil.rmtree(root)
    return out


def row_groups(table: pa.Table, tmp: Path, qs: np.ndarray, repeats: int) -> list[dict[str, Any]]:
    """get-by-id and one-tenant search latency at 10k vs 100k rows per row group."""
    ns, ids, out = table["namespace"][0].as_py(), table["id"].to_pylist(), []
    pick = np.random.default_rng(3).choice(len(ids), repeats + 1)
    for size in (10_000, 100_000):
        root = tmp / f"rg-{size}"
        t = ColdTier(root, DIM, row_group_size=size)
        t.put(table)
        out.append(
            {
                "row_group_size": size,
                "rows": table.num_rows,
                "bytes_per_memory": t.stats().bytes / table.num_rows,
                "get_one": timed(partial(_get_one, t, [ids[i] for i in pick]), repeats),
                "search": timed(_searcher(t, ns, qs), repeats),
            }
        )
        t.close()
        shutil.rmtree(root)
    return out


def raw_bytes(tables: list[pa.Table]) -> dict[str, float]:
    """Uncompressed vector and text bytes per memory (the reference for bytes per memory)."""
    import pyarrow.compute as pc

    n = sum(t.num_rows for t in tables)
    text = sum(int(pc.sum(pc.binary_length(t["text"])).as_py()) for t in tables) / n
    return {
        "vector_float32": DIM * 4,
        "vector_float16": DIM * 2,
        "text": text,
        "total_float32": DIM * 4 + text,
        "total_float16": DIM * 2 + text,
    }


def measure(n: int, url: str, repeats: int, tmp: Path) -> dict[str, Any]:
    """Everything in the module docstring, in one data dir under `tmp`."""
    prefix = f"bench-cold:{uuid.uuid4().hex[:8]}"
    report: dict[str, Any] = {"n": n, "dim": DIM, "namespaces": NAMESPACES, "repeats": repeats}
    report["loadavg_at_start"] = list(os.getloadavg())
    t0 = time.perf_counter()
    tables, centres, topics = generate(n)
    report["generate_s"] = time.perf_counter() - t0
    tenants = {"largest": 0, "median": NAMESPACES // 2}
    report["tenants"] = {
        k: {"namespace": tables[i]["namespace"][0].as_py(), "rows": tables[i].num_rows}
        for k, i in tenants.items()
    }
    rng = np.random.default_rng(1)
    qs = {k: queries(rng, centres, topics[i], repeats + 1) for k, i in tenants.items()}
    report["raw_bytes_per_memory"] = raw_bytes(tables)
    store, single = tmp / "store", tmp / "single.parquet"
    mem = open_engine(store, url, prefix)
    try:
        t0 = time.perf_counter()
        for t in tables:
            mem.backends.l3.put(t)
        secs = time.perf_counter() - t0
        st = mem.backends.l3.stats()
        report["write"] = {
            "seconds": secs,
            "rows_per_s": n / secs,
            "files": len(mem.backends.l3.files()),
            "bytes_per_memory": st.bytes / n,
        }
        mem.close()
        mem = open_engine(store, url, prefix)  # the data dir opens as a store
        assert mem.backends.l3.stats().count == n
        cfg = mem.config.l3
        write_single(tables, single, cfg.zstd_level, cfg.row_group_size)
        report["single_file_bytes_per_memory"] = single.stat().st_size / n
        base = baseline_connection()
        report["queries"] = {
            k: tenant_queries(mem, base, single, report["tenants"][k]["namespace"], qs[k], repeats)
            for k in tenants
        }
        report["queries"]["all"] = all_tenants(mem, base, single, qs["largest"], repeats)
        f32_top = {
            k: top_ids(mem.backends.l3, report["tenants"][k]["namespace"], qs[k]) for k in tenants
        }
        report["sweep"] = sweep(tables[0], tmp, qs["largest"], repeats)
        report["row_groups"] = row_groups(tables[0], tmp, qs["largest"], repeats)
        del tables
        mem.close()
        mem = open_engine(store, url, prefix, vector_precision="float16")
        report["float16_store"] = float16_store(mem, base, report, qs, f32_top, repeats)
        base.close()
    finally:
        mem.close()
        drop_prefix(url, prefix)
    report["loadavg_at_end"] = list(os.getloadavg())
    report["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return report


def float16_store(
    mem: tiermem.Engine,
    base: Any,
    report: dict[str, Any],
    qs: dict[str, np.ndarray],
    f32_top: dict[str, list[list[str]]],
    repeats: int,
) -> dict[str, Any]:
    """The whole store rewritten at float16 by the compact job; its figures vs float32."""
    l3, flt = mem.backends.l3, Filter(now=datetime.now(UTC))
    t0 = time.perf_counter()
    mem.run("compact")
    out: dict[str, Any] = {"compact_s": time.perf_counter() - t0}
    out["bytes_per_memory"] = l3.stats().bytes / report["n"]
    assert {f.vector_precision for f in l3._manifest.data} == {"float16"}
    for k, tenant in report["tenants"].items():
        ns = tenant["namespace"]
        search = timed(_searcher(l3, ns, qs[k], flt), repeats)
        f32 = report["queries"][k]["search_tier"]["engine"]["median_ms"]
        out[k] = {
            "search_tier": search,
            "vs_float32": search["median_ms"] / f32,
            "top10_agreement_with_float32": agreement(top_ids(l3, ns, qs[k]), f32_top[k]),
        }
    score = f"array_cosine_similarity(embedding, {literal(qs['largest'][0])}) AS score"
    q = f"SELECT id, {score} FROM cold ORDER BY score DESC, id LIMIT 10"
    search = timed(lambda r: mem.sql(q), repeats)
    f32 = report["queries"]["all"]["search_sql"]["engine"]["median_ms"]
    out["all"] = {"search_sql": search, "vs_float32": search["median_ms"] / f32}
    return out


def drop_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    client.close()


# -- report --------------------------------------------------------------------------


def _cmp(c: dict[str, Any]) -> str:
    e, b = c["engine"], c["baseline"]
    return (
        f"{e['median_ms']:.1f} ({e['min_ms']:.1f}-{e['max_ms']:.1f}) | "
        f"{b['median_ms']:.1f} ({b['min_ms']:.1f}-{b['max_ms']:.1f}) | {c['ratio']:.2f}"
    )


def markdown(r: dict[str, Any]) -> str:
    """A short Markdown summary of a report."""
    lines = [
        f"# L3 cold tier at {r['n']:,} memories ({r['dim']}-d, {r['namespaces']} namespaces)",
        "",
        f"Written through `ColdTier.put`: {r['write']['rows_per_s']:,.0f} rows/s, "
        f"{r['write']['bytes_per_memory']:.0f} B/memory (float32, zstd 3); raw vector+text "
        f"{r['raw_bytes_per_memory']['total_float32']:.0f} B (float32), "
        f"{r['raw_bytes_per_memory']['total_float16']:.0f} B (float16).",
        "",
        "ms, median (min-max) over "
        f"{r['repeats']} repeats; baseline: the same DuckDB query on one unpartitioned file. "
        f"Shared 2-core host, load average {r['loadavg_at_start'][0]:.1f} at start, "
        f"{r['loadavg_at_end'][0]:.1f} at end.",
        "",
        "| query | tenant (rows) | tiermem ms | one file ms | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for k, t in r["tenants"].items():
        for q, label in (
            ("count", "count"),
            ("time_range", "one month"),
            ("search_tier", "top-10 (ColdTier.search)"),
            ("search_sql", "top-10 (SQL, `cold`)"),
        ):
            lines.append(f"| {label} | {k} ({t['rows']:,}) | {_cmp(r['queries'][k][q])} |")
    lines.append(
        f"| top-10 (SQL, `cold`) | all ({r['n']:,}) | {_cmp(r['queries']['all']['search_sql'])} |"
    )
    lines += [
        "",
        "Precision and zstd level, on the largest tenant "
        f"({r['tenants']['largest']['rows']:,} rows):",
        "",
        "| precision | zstd | B/memory | write rows/s | top-10 search ms | top-10 = float32 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in r["sweep"]:
        lines.append(
            f"| {s['precision']} | {s['zstd_level']} | {s['bytes_per_memory']:.0f} | "
            f"{s['write_rows_per_s']:,.0f} | {s['search']['median_ms']:.1f} | "
            f"{s['top10_agreement_with_float32']:.3f} |"
        )
    f16 = r["float16_store"]
    lines += [
        "",
        f"Whole store compacted to float16 (`compact`, {f16['compact_s']:.0f} s): "
        f"{f16['bytes_per_memory']:.0f} B/memory; top-10 search vs float32: largest "
        f"{f16['largest']['vs_float32']:.2f}x "
        f"(agreement {f16['largest']['top10_agreement_with_float32']:.3f}), "
        f"median {f16['median']['vs_float32']:.2f}x, all tenants {f16['all']['vs_float32']:.2f}x.",
        "",
        "| row group | get one id ms | top-10 search ms | B/memory |",
        "|---:|---:|---:|---:|",
    ]
    for g in r["row_groups"]:
        lines.append(
            f"| {g['row_group_size']:,} | {g['get_one']['median_ms']:.1f} | "
            f"{g['search']['median_ms']:.1f} | {g['bytes_per_memory']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def run(quick: bool, out: Path | None = None) -> dict[str, Any]:
    """The suite: 1,000,000 memories (quick: 20,000). Writes JSON (and .md) to `out`:
    a directory or a .json path; a full run without `out` writes benchmarks/results."""
    return _run(20_000 if quick else 1_000_000, quick, out, URL)


def _run(n: int, quick: bool, out: Path | None, url: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="tm-bench-cold-"))
    try:
        report = measure(n, url, 3 if quick else 7, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["quick"] = quick
    if out is None and not quick:
        out = RESULTS
    if out is not None:
        path = out / "cold.json" if out.suffix != ".json" else out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        path.with_suffix(".md").write_text(markdown(report))
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 memories (CI smoke)")
    ap.add_argument("--n", type=int, default=None, help="memories (default 1,000,000)")
    ap.add_argument("--out", type=Path, default=None, help="directory or .json path")
    ap.add_argument("--url", default=URL, help="Redis for the Engine's L1 (a unique prefix)")
    args = ap.parse_args()
    n = args.n or (20_000 if args.quick else 1_000_000)
    report = _run(n, args.quick, args.out, args.url)
    print(markdown(report))


if __name__ == "__main__":
    main()
