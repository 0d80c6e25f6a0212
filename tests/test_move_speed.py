"""The fast paths of an L1 -> L2 move keep what the slow ones did: L1 reads
decoded column by column (HMGET), deletes as one packed MULTI/EXEC, the
light snapshot's script packed by hiredis, events encoded by one encoder."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import redis

from tests.tables import DIM, by_id, make_table
from tiermem import schema as sch
from tiermem.events import EventLog
from tiermem.model import KINDS, Action
from tiermem.tiers import hot_codec as codec
from tiermem.tiers.hot import HotTier
from tiermem.tiers.keys import Keys


def as_replied(values: list[Any]) -> list[bytes | None]:
    """Stored values as HMGET returns them: bytes (redis-py writes a str as UTF-8)."""
    return [v.encode() if isinstance(v, str) else v for v in values]


# Reads of up to `FEW_ROWS` records convert each value in Python; larger ones by Arrow.
BOTH_PATHS = pytest.mark.parametrize("few_rows", [0, codec.FEW_ROWS], ids=["arrow", "python"])


@BOTH_PATHS
def test_floats_and_extreme_times_read_back_exactly(
    hot_tier: HotTier, few_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stored decimals are parsed back: every float64 and µs value must survive."""
    monkeypatch.setattr(codec, "FEW_ROWS", few_rows)
    rng = np.random.default_rng(7)
    importance = [5e-324, 1e-300, 0.1 + 0.2, 1 / 3, *rng.random(4).tolist()]
    before_epoch = datetime(1901, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    t = make_table("f", 8, importance=importance, version=[2**62, *range(7)])
    t = t.set_column(
        t.schema.get_field_index("created_at"),
        "created_at",
        pa.array([before_epoch] * 8, sch.TS),
    )
    hot_tier.put(t)
    got = hot_tier.get(t.column("id").to_pylist())
    assert got.schema == sch.schema(DIM)
    assert by_id(got) == by_id(t)


@BOTH_PATHS
def test_decode_skips_vanished_records_and_reads_omitted_fields_as_written(
    few_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec, "FEW_ROWS", few_rows)
    fields = dict.fromkeys(sch.COLUMNS)
    stored = make_table("d", 1, pinned=[False])
    cols = codec.encode_columns(stored)
    row = as_replied([cols[n][0] for n in sch.COLUMNS])
    row[sch.COLUMNS.index("pinned")] = None  # an omitted flag reads as False
    got = codec.decode_rows(DIM, [[None] * len(fields), row, [None] * len(fields)])
    assert got.schema == sch.schema(DIM)
    assert by_id(got) == by_id(stored)
    assert codec.decode_rows(DIM, []).schema == sch.schema(DIM)


def test_both_decode_paths_give_the_same_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every column type, nulls included (expires_at, superseded_by, name unset on some)."""
    stored = make_table("s", 12, seed=3)
    cols = codec.encode_columns(stored)
    replies = [as_replied([cols[n][i] for n in sch.COLUMNS]) for i in range(stored.num_rows)]
    nulls = [sch.COLUMNS.index(n) for n in ("expires_at", "superseded_by", "name", "pinned")]
    assert any(r[i] is None for r in replies for i in nulls)
    by_python = codec.decode_rows(DIM, replies)
    monkeypatch.setattr(codec, "FEW_ROWS", 0)
    assert by_python.equals(codec.decode_rows(DIM, replies))
    assert by_id(by_python) == by_id(stored)


def test_delete_removes_record_directory_and_index_entries_in_one_step(
    hot_tier: HotTier, keys: Keys, redis_client: redis.Redis
) -> None:
    a, b = make_table("a", 4, seed=1), make_table("b", 3, seed=2)
    hot_tier.put(pa.concat_tables([a, b]))
    gone = [*a.column("id").to_pylist()[:2], *b.column("id").to_pylist()]
    versions = {ns: int(redis_client.get(keys.version(ns)) or 0) for ns in ("a", "b")}
    assert hot_tier.delete([*gone, "nope"]) == 5
    for id_ in gone:
        ns = id_.split("-")[0]
        assert not redis_client.exists(keys.record(ns, id_))
        assert redis_client.hget(keys.directory(), id_) is None
        assert redis_client.zscore(keys.recency(ns), id_) is None
        assert redis_client.zscore(keys.frequency(ns), id_) is None
        assert all(redis_client.zscore(keys.kind_index(ns, k), id_) is None for k in KINDS)
    for ns, v in versions.items():
        assert int(redis_client.get(keys.version(ns)) or 0) == v + 1
    assert hot_tier.ids("a") == a.column("id").to_pylist()[2:]


def test_event_lines_are_compact_json(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    acts = [
        Action(id="x1", namespace="ns ✓", action="move", src="l1", dst="l2", reason='a "b"'),
        Action(id="x2", namespace="n", action="delete", src="l2", reason="r"),
    ]
    log.append("run1", "demote", at, acts)
    head = {"at": at.isoformat(), "run": "run1", "job": "demote"}
    want = [json.dumps({**head, **a.model_dump()}, separators=(",", ":")) for a in acts]
    assert log.path.read_text(encoding="utf-8").splitlines() == want


def test_event_lines_fall_back_to_the_encoder_for_other_values() -> None:
    from tiermem.events import _ENCODE, _line

    head = {"at": "t", "run": "r"}
    for fields in ({"a": 1, "b": None, "c": "ü"}, {}, {"x": "y"}):
        assert _line(_ENCODE(head)[:-1], fields) == _ENCODE({**head, **fields})


def test_delete_by_known_namespaces_does_what_delete_does(hot_tier: HotTier, keys: Keys) -> None:
    t = make_table("a", 5)
    hot_tier.put(t)
    ids = t.column("id").to_pylist()
    assert hot_tier.delete([*ids[:3], "nope"], namespaces=["a"] * 4) == 3
    assert hot_tier.ids("a") == ids[3:]
    assert hot_tier.locate(ids) == dict.fromkeys(ids[3:], "a")
    assert hot_tier.delete([], namespaces=[]) == 0


def test_move_from_l1_looks_ids_up_once_per_batch(
    hot_tier: HotTier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiermem.moves import Mover
    from tiermem.tiers.warm import WarmTier

    t = pa.concat_tables([make_table("a", 6, seed=1), make_table("b", 5, seed=2)])
    hot_tier.put(t)
    l2 = WarmTier(tmp_path / "l2", DIM)
    at = datetime(2026, 1, 2, tzinfo=UTC)
    mover = Mover({"l1": hot_tier, "l2": l2}, tmp_path / "journal", 4, lambda: at)  # type: ignore[dict-item]
    lookups: list[int] = []
    real = hot_tier._locate
    monkeypatch.setattr(hot_tier, "_locate", lambda ids: lookups.append(len(ids)) or real(ids))
    assert mover.move("l1", "l2", t.column("id").to_pylist()) == 11
    assert lookups == [11, 4, 4, 3]  # ordering, then reads; deletes use the namespaces read
    assert hot_tier.namespaces() == set()
    moved = l2.get(t.column("id").to_pylist())
    assert set(moved.column("tiered_at").to_pylist()) == {at}
    assert by_id(moved.drop_columns(["tiered_at"])) == by_id(t.drop_columns(["tiered_at"]))
