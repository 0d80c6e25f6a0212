"""L3 vector layouts: bytes-layout files (searched in numpy) agree with list-layout
files (searched in DuckDB), and a store holding both reads, searches, queries and
compacts as one."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.test_cold import DIM, T0, make_rows
from tiermem.errors import ConfigError, TierUnavailable
from tiermem.filters import Filter, parse_where
from tiermem.schema import vectors
from tiermem.tiers import cold_search
from tiermem.tiers.base import SCORE
from tiermem.tiers.cold import ColdTier

ALL = Filter(include_superseded=True)  # make_rows supersedes some rows
FILTERS = {
    "none": Filter(),
    "all": ALL,
    "kinds": Filter(kinds=frozenset({"semantic", "procedural"})),
    "time": Filter(since=T0 + timedelta(minutes=20), until=T0 + timedelta(minutes=170)),
    "where": Filter(where=parse_where({"lang": "fr"})),
    "where-rare": Filter(where=parse_where({"i": {"$gte": 195}})),
    "now": Filter(now=T0 + timedelta(days=1)),
}


def tier_with(root: Path, layout: str, precision: str = "float32") -> ColdTier:
    tier = ColdTier(
        root, DIM, row_group_size=1000, vector_layout=layout, vector_precision=precision
    )  # type: ignore[arg-type]
    for seed in range(4):  # four files; ids repeat across two of them (upserts)
        rows = make_rows("a", 50, seed=seed, ids=[f"id-{seed % 3}-{i:03d}" for i in range(50)])
        rows = rows.set_column(
            rows.schema.get_field_index("metadata"),
            "metadata",
            pa.array(
                [f'{{"i":{seed * 50 + i},"lang":"{("en", "fr")[i % 2]}"}}' for i in range(50)]
            ),
        )
        tier.put(rows)
    tier.put(make_rows("b", 30, seed=9))  # another namespace: never in a result
    tier.delete([f"id-1-{i:03d}" for i in range(0, 50, 7)])
    return tier


@pytest.mark.parametrize("precision", ["float32", "float16"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_bytes_layout_search_equals_list_layout(tmp_path: Path, name: str, precision: str) -> None:
    flt = FILTERS[name]
    old = tier_with(tmp_path / "list", "list", precision)
    new = tier_with(tmp_path / "bytes", "bytes", precision)
    assert {f.vector_layout for f in new._manifest.data} == {"bytes"}
    rng = np.random.default_rng(5)
    for q in rng.standard_normal((6, DIM)).astype(np.float32):
        for k in (1, 10, 500):
            want = old.search("a", q, k, flt)
            got = new.search("a", q, k, flt)
            assert got.schema == want.schema
            assert got["id"].to_pylist() == want["id"].to_pylist(), (name, k)
            np.testing.assert_allclose(got[SCORE].to_numpy(), want[SCORE].to_numpy(), atol=1e-5)
            assert got.drop_columns([SCORE]).equals(want.drop_columns([SCORE]))
    old.close()
    new.close()


def test_ties_break_by_id(tmp_path: Path) -> None:
    tier = ColdTier(tmp_path, DIM, row_group_size=1000)
    rows = make_rows("a", 300, seed=1)
    same = np.tile(vectors(rows)[:1], (300, 1))
    tier.put(
        rows.set_column(
            4, "embedding", pa.FixedSizeListArray.from_arrays(pa.array(same.reshape(-1)), DIM)
        )
    )
    got = tier.search("a", same[0], 5, ALL)["id"].to_pylist()
    assert got == sorted(rows["id"].to_pylist())[:5]


def test_store_of_both_layouts_reads_as_one(tmp_path: Path) -> None:
    old = ColdTier(tmp_path, DIM, row_group_size=1000, vector_layout="list")
    first = make_rows("a", 60, seed=1)
    old.put(first)
    old.close()
    tier = ColdTier(tmp_path, DIM, row_group_size=1000)  # the default: bytes
    second = make_rows("a", 40, seed=2)
    tier.put(second)
    killed = first["id"][0].as_py()
    tier.delete([killed])
    assert sorted(f.vector_layout for f in tier._manifest.data) == ["bytes", "list"]
    want = pa.concat_tables([first.slice(1), second]).sort_by("id")
    ids = want["id"].to_pylist()

    def check() -> None:
        got = tier.get([*ids, killed]).sort_by("id")
        assert got["id"].to_pylist() == ids
        np.testing.assert_array_equal(vectors(got), vectors(want))
        scanned = pa.concat_tables(tier.scan("a")).sort_by("id")
        np.testing.assert_array_equal(vectors(scanned), vectors(want))
        mat = vectors(want)
        for q in mat[[3, 70]]:
            cos = (mat @ q) / (np.linalg.norm(mat, axis=1) * np.linalg.norm(q))
            top = tier.search("a", q, 5, ALL)["id"].to_pylist()
            assert top == [ids[i] for i in np.argsort(-cos, kind="stable")[:5]]

    check()
    assert tier.compact_namespace("a") == 99  # rewrites the list file too
    assert [f.vector_layout for f in tier._manifest.data] == ["bytes"]
    (path,) = tier.files("a")
    assert pa.types.is_fixed_size_binary(pq.read_schema(path).field("embedding").type)
    check()
    tier.close()


def test_bytes_layout_embedding_is_raw_uncompressed_floats(tmp_path: Path) -> None:
    """The layout other readers rely on: little-endian float32, PLAIN, no compression."""
    tier = ColdTier(tmp_path, DIM, row_group_size=1000)
    rows = make_rows("a", 10, seed=3)
    tier.put(rows)
    (path,) = tier.files("a")
    table = pq.read_table(path).sort_by("id")
    raw = b"".join(table["embedding"].to_pylist())
    want = vectors(rows.sort_by("id"))
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4").reshape(10, DIM), want)
    col = pq.read_metadata(path).row_group(0).column(table.schema.get_field_index("embedding"))
    assert col.compression == "UNCOMPRESSED"
    tier.close()


@pytest.mark.parametrize("name", list(FILTERS))
def test_filter_needs_only_its_columns(name: str) -> None:
    """The numpy search reads `Filter.columns()` (and id) only: the mask must agree."""
    flt = FILTERS[name]
    table = make_rows("a", 60, seed=4)
    assert (flt.mask(table.select(["id", *flt.columns()])) == flt.mask(table)).all()


def test_norms_are_kept_per_file_part_and_bounded(tmp_path: Path) -> None:
    tier = ColdTier(tmp_path, DIM, row_group_size=1000)
    tier.put(make_rows("a", 30, seed=1))
    q = np.ones(DIM, np.float32)
    first = tier.search("a", q, 5, ALL)
    assert len(tier._norms._norms) == 1
    assert tier.search("a", q, 5, ALL).equals(first)  # from the kept norms: same answer
    tier._norms.max_rows = 40
    tier.put(make_rows("a", 30, seed=2))  # a second file: 60 rows > 40, so it starts over
    tier.search("a", q, 5, ALL)
    assert tier._norms._rows <= 40
    tier.close()


@pytest.mark.parametrize("name", ["none", "where", "kinds"])
def test_files_read_in_several_parts_agree(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file cut into parts (read on two threads) ranks as one: same top-k as DuckDB."""
    monkeypatch.setattr(cold_search, "PART_ROWS", 1000)
    old = ColdTier(tmp_path / "list", DIM, row_group_size=1000, vector_layout="list")
    new = ColdTier(tmp_path / "bytes", DIM, row_group_size=1000)
    rows = make_rows("a", 4500, seed=6)
    old.put(rows)
    new.put(rows)
    path = str(new.files("a")[0])
    assert len(cold_search._parts(path, frozenset())) == 5
    for q in np.random.default_rng(2).standard_normal((4, DIM)).astype(np.float32):
        want = old.search("a", q, 25, FILTERS[name])
        got = new.search("a", q, 25, FILTERS[name])
        assert got["id"].to_pylist() == want["id"].to_pylist()
    old.close()
    new.close()


def test_a_missing_file_is_a_typed_error(tmp_path: Path) -> None:
    """A data file gone from under the manifest (e.g. removed by hand): TierUnavailable
    naming the tier, not a raw pyarrow error."""
    tier = ColdTier(tmp_path, DIM, row_group_size=1000)
    tier.put(make_rows("a", 10, seed=1))
    tier.files("a")[0].unlink()
    with pytest.raises(TierUnavailable, match="L3 search failed"):
        tier.search("a", np.ones(DIM, np.float32), 3, ALL)
    tier.close()


def test_no_statistics_for_the_vector_bytes(tmp_path: Path) -> None:
    """Min/max of 1.5 KB values prune nothing: a small file would be mostly statistics."""
    tier = ColdTier(tmp_path, DIM, row_group_size=1000)
    tier.put(make_rows("a", 10, seed=3))
    meta = pq.read_metadata(tier.files("a")[0]).row_group(0)
    cols = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert not cols["embedding"].is_stats_set
    assert cols["id"].is_stats_set  # the id ranges still prune lookups
    tier.close()


def test_format_1_manifest_reads_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    """A data dir from before the bytes layout (manifest format 1, no layout
    field) opens, reads and searches; a manifest from a newer tiermem is refused."""
    old = ColdTier(tmp_path, DIM, row_group_size=1000, vector_layout="list")
    rows = make_rows("a", 20, seed=1)
    old.put(rows)
    old.close()
    path = tmp_path / "manifest.json"
    raw = json.loads(path.read_text())
    raw["format"] = 1
    for entry in raw["data"]:
        del entry["vector_layout"]
    path.write_text(json.dumps(raw))
    tier = ColdTier(tmp_path, DIM, row_group_size=1000)
    assert [f.vector_layout for f in tier._manifest.data] == ["list"]
    assert tier.get(rows["id"].to_pylist()).num_rows == 20
    assert tier.search("a", vectors(rows)[0], 1, ALL)["id"].to_pylist() == [rows["id"][0].as_py()]
    tier.put(make_rows("a", 5, seed=2))
    assert json.loads(path.read_text())["format"] == 2
    tier.close()
    raw = json.loads(path.read_text())
    raw["format"] = 99
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="newer tiermem"):
        ColdTier(tmp_path, DIM)
