"""L3 vector precision (`l3.vector_precision`): float16 files, mixed-precision stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tiermem
from tests.conftest import DIM, OpenStore
from tests.test_cold import make_rows
from tiermem.filters import Filter
from tiermem.schema import embedding_array, schema, vectors
from tiermem.tiers.cold import ColdTier

# float16 keeps 11 significant bits: a unit vector's elements (|x| <= 1) round
# by at most 2**-11 relative, i.e. under 4.9e-4 absolute.
F16_ATOL = 2.0**-11


def unit(m: np.ndarray) -> np.ndarray:
    out: np.ndarray = (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)
    return out


def clustered(n: int, dim: int, centres: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` unit vectors in tight, well-separated clusters, and the unit centres."""
    rng = np.random.default_rng(seed)
    c = unit(rng.standard_normal((centres, dim)))
    pick = rng.integers(0, centres, n)
    return unit(c[pick] + 0.3 * rng.standard_normal((n, dim)) / np.sqrt(dim)), c


def element_type(path: Path, dim: int) -> pa.DataType:
    """The float type a data file stores vector elements as (either layout)."""
    t = pq.read_schema(path).field("embedding").type
    if pa.types.is_fixed_size_binary(t):  # the bytes layout: dim floats per value
        return {2: pa.float16(), 4: pa.float32()}[t.byte_width // dim]
    out: pa.DataType = t.value_type
    return out


def test_float16_round_trip_within_tolerance(tmp_path: Path) -> None:
    dim = 8
    tier = ColdTier(tmp_path / "l3", dim, vector_precision="float16")
    rows = make_rows("a", 50, seed=3)
    want = unit(vectors(rows))
    rows = rows.set_column(4, "embedding", embedding_array(want))
    tier.put(rows)
    (path,) = tier.files("a")
    assert element_type(path, dim) == pa.float16()  # the file says its precision
    assert tier._manifest.data[0].vector_precision == "float16"
    got = tier.get(rows["id"].to_pylist()).sort_by("id")
    assert got.schema == schema(dim)  # read back as float32
    order = np.argsort(rows["id"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(vectors(got), want[order], rtol=0, atol=F16_ATOL)
    assert not np.array_equal(vectors(got), want[order])  # really stored at float16
    scanned = pa.concat_tables(tier.scan("a")).sort_by("id")
    np.testing.assert_array_equal(vectors(scanned), vectors(got))
    tier.close()


def test_float16_search_ranking_matches_float32(tmp_path: Path) -> None:
    dim, n = 64, 600
    mat, centres = clustered(n, dim, 12, seed=5)
    rows = make_rows("a", n, seed=5)
    rows = rows.set_column(4, "embedding", embedding_array(mat))
    tiers = {}
    for precision in ("float32", "float16"):
        t = ColdTier(tmp_path / precision, dim, vector_precision=precision)  # type: ignore[arg-type]
        t.put(rows)
        tiers[precision] = t
    rng = np.random.default_rng(9)
    for q in unit(centres + 0.3 * rng.standard_normal(centres.shape) / np.sqrt(dim)):
        full = tiers["float32"].search("a", q, 10, Filter())
        half = tiers["float16"].search("a", q, 10, Filter())
        assert half["id"].to_pylist() == full["id"].to_pylist()
        np.testing.assert_allclose(half["_score"], full["_score"], atol=2e-3)
    for t in tiers.values():
        t.close()


def test_mixed_precision_tier_reads_and_compacts(tmp_path: Path) -> None:
    dim = 8
    root = tmp_path / "l3"
    first, second = make_rows("a", 30, seed=1), make_rows("a", 30, seed=2)
    t = ColdTier(root, dim, row_group_size=1000)
    t.put(first)
    t.close()
    t = ColdTier(root, dim, row_group_size=1000, vector_precision="float16")
    t.put(second)
    killed = first["id"][0].as_py()
    assert t.delete([killed]) == 1
    assert sorted(f.vector_precision for f in t._manifest.data) == ["float16", "float32"]
    ids = [*first["id"].to_pylist()[1:], *second["id"].to_pylist()]
    want = pa.concat_tables([first.slice(1), second]).sort_by("id")

    def check(tier: ColdTier) -> None:
        got = tier.get(ids).sort_by("id")
        assert got["id"].to_pylist() == want["id"].to_pylist()
        np.testing.assert_allclose(vectors(got), vectors(want), rtol=1e-3, atol=1e-2)
        scanned = pa.concat_tables(tier.scan()).sort_by("id")
        assert scanned["id"].to_pylist() == want["id"].to_pylist()
        q = vectors(want)[5]
        assert tier.search("a", q, 1, Filter())["id"][0].as_py() == want["id"][5].as_py()

    check(t)
    assert t.compact_namespace("a") == 59
    (path,) = t.files("a")
    assert element_type(path, dim) == pa.float16()
    assert t._manifest.data[0].vector_precision == "float16"
    check(t)
    t.close()
    # Back to float32: compaction rewrites even a single compact file to the setting.
    t = ColdTier(root, dim, row_group_size=1000)
    assert t.compact_namespace("a") == 59
    (path,) = t.files("a")
    assert element_type(path, dim) == pa.float32()
    check(t)
    t.close()


def _engine_phase(mem: tiermem.Engine, tag: str, n: int) -> list[str]:
    ids = [mem.add(f"{tag} memory {i}", namespace="a").id for i in range(n)]
    for id_ in ids:
        mem.demote(id_, to="l3")
    return ids


@pytest.mark.parametrize("first", ["float32", "float16"])
def test_engine_store_with_both_precisions(
    open_store: OpenStore, tmp_path: Path, first: str
) -> None:
    second = "float16" if first == "float32" else "float32"
    path = tmp_path / "store"
    mem = open_store(path, overrides={"l3.vector_precision": first})
    ids = _engine_phase(mem, "one", 4)
    mem.close()
    mem = open_store(path, overrides={"l3.vector_precision": second})
    ids += _engine_phase(mem, "two", 4)
    data = mem.backends.l3._manifest.data
    assert {f.vector_precision for f in data} == {"float32", "float16"}

    def reads_everything() -> None:
        assert mem.sql("SELECT typeof(embedding) AS t FROM cold").column("t").to_pylist() == [
            f"FLOAT[{DIM}]"
        ] * len(ids)
        described = mem.sql("DESCRIBE memories").to_pylist()
        assert {r["column_name"]: r["column_type"] for r in described}["embedding"] == (
            f"FLOAT[{DIM}]"
        )
        got = mem.get_many(ids)
        assert set(got) == set(ids) and {m.tier for m in got.values()} == {"l3"}
        for id_, m in got.items():
            assert m.embedding.dtype == np.float32
            hits = mem.search(m.embedding, namespace="a", k=1, deep=True)
            assert hits[0].memory.id == id_
        assert {m.id for m in mem.scan(tiers=["l3"])} == set(ids)
        assert mem.export(tmp_path / f"out-{len(list(tmp_path.iterdir()))}.parquet") == len(ids)
        assert mem.check().ok

    reads_everything()
    mem.run("compact")
    data = mem.backends.l3._manifest.data
    assert [f.vector_precision for f in data] == [second]
    reads_everything()
