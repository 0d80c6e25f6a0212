"""The fast add_many path gives exactly what the plain one gave: same validated
items and errors (`quick_parse`, `records.parse_batch`, `check_metadata`), same
stored bytes (`hot_codec` encoding and HSET rows), same transaction effects."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import redis
from hiredis import pack_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticValidationError

from tests.tables import DIM, T0, by_id, make_table
from tiermem import records
from tiermem import schema as sch
from tiermem.errors import ValidationError
from tiermem.fields import MAX_METADATA_KEY, check_metadata, check_scalar, json_bound
from tiermem.model import MemoryIn, quick_parse, translate
from tiermem.tiers import hot_codec as codec
from tiermem.tiers.hot import HotTier
from tiermem.tiers.keys import Keys

# -- reference: the code the fast paths replaced ---------------------------------


def old_check_metadata(meta: Any, max_bytes: int = 16_384) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise ValueError(f"must be a flat JSON object (a dict), not {type(meta).__name__}")
    bound = 2
    for key, value in meta.items():
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY:
            raise ValueError(f"keys must be non-empty strings of <= {MAX_METADATA_KEY} chars")
        for item in value if isinstance(value, list) else [value]:
            check_scalar(key, item)
            bound += json_bound(item)
        bound += json_bound(key) + 4
    if bound <= max_bytes:
        return meta
    size = len(json.dumps(meta, separators=(",", ":")).encode())
    if size > max_bytes:
        raise ValueError(f"is {size} bytes as JSON; the limit is {max_bytes}")
    return meta


def old_parse(data: Any, **defaults: Any) -> MemoryIn:
    """`MemoryIn.parse` as it was: pydantic for every item."""
    if isinstance(data, MemoryIn):
        return data.model_copy(update={k: v for k, v in defaults.items() if v is not None})
    if not isinstance(data, dict):
        raise ValidationError(f"each item must be a dict, not {type(data).__name__}")
    merged = {**{k: v for k, v in defaults.items() if v is not None}, **data}
    try:
        return MemoryIn.model_validate(merged)
    except PydanticValidationError as exc:
        raise translate(exc) from None


def outcome(fn: Any, *args: Any) -> MemoryIn | str:
    """fn's result, or the exception it raised as text."""
    try:
        got: MemoryIn = fn(*args)
        return got
    except Exception as exc:
        return f"{type(exc).__name__}:{exc}"


def old_one(raw: Any, namespace: str | None, dim: int) -> MemoryIn:
    """add_many's per-item path before the batch one: parse, then its checks."""
    item = old_parse(raw, namespace=namespace)
    if item.supersedes is not None:
        raise ValidationError("use add() for supersedes", field="supersedes")
    vec = item.embedding
    if vec is not None and (vec.shape != (dim,) or not vec.any()):
        records.check_vector(vec, dim)
    return item


def same(a: MemoryIn | str, b: MemoryIn | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    da, db = a.__dict__, b.__dict__
    return (
        list(da) == list(db)
        and a.model_fields_set == b.model_fields_set
        and all(
            np.array_equal(da[k], db[k]) and da[k].dtype == db[k].dtype
            if isinstance(da[k], np.ndarray)
            else (da[k] == db[k] and type(da[k]) is type(db[k]))
            for k in da
        )
    )


# -- strategies ---------------------------------------------------------------------

floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 0.5, 1.0])
scalars = st.none() | st.booleans() | st.integers() | floats | st.text(max_size=8)
meta_values = (
    scalars | st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=2), scalars)
)
meta_keys = st.text(max_size=3) | st.sampled_from(["k" * MAX_METADATA_KEY, "k" * 129])
metadata = st.dictionaries(meta_keys, meta_values, max_size=4) | st.none() | st.just([1])
vectors = (
    st.none()
    | st.lists(floats, min_size=0, max_size=DIM + 1)
    | st.lists(st.floats(-2, 2, width=32), min_size=DIM, max_size=DIM).map(
        lambda v: np.asarray(v, np.float32)
    )
    | st.just(np.zeros(DIM))
    | st.just("not a vector")
)
fields = {
    "kind": st.sampled_from(["episodic", "semantic", "procedural", "dream", None]),
    "metadata": metadata,
    "importance": floats | st.floats(-0.5, 1.5) | st.integers(-1, 2) | st.booleans() | st.none(),
    "embedding": vectors,
    "pinned": st.booleans(),
    "ttl": st.none() | st.integers(-1, 5),
    "name": st.none() | st.just("proc"),
    "supersedes": st.none() | st.just("old-id"),
    "colour": st.just("red"),
}
required = {
    "text": st.just("a memory") | st.text(max_size=6) | st.sampled_from([42, "x" * 9000]),
    "namespace": st.sampled_from(["user:a", "b", "", "no space", "n\n", 7]),
}
items = st.fixed_dictionaries(required, optional=fields)  # type: ignore[arg-type]
quick_fields = {k: fields[k] for k in ("kind", "metadata", "importance", "embedding")}
plain = {"text": st.sampled_from(["a memory", "ü ✓"]), "namespace": st.just("user:a")}
quick_items = st.fixed_dictionaries(plain, optional=quick_fields)  # type: ignore[arg-type]


# -- validation -----------------------------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(quick_items | items)
def test_quick_parse_is_pydantic_or_declines(data: dict[str, Any]) -> None:
    quick = quick_parse(data)
    if quick is not None:
        assert same(quick, outcome(MemoryIn.model_validate, data))


@settings(max_examples=400, deadline=None)
@given(quick_items | items, st.sampled_from([None, "ns:default"]))
def test_parse_gives_what_it_gave(data: dict[str, Any], namespace: str | None) -> None:
    got = outcome(lambda: MemoryIn.parse(data, namespace=namespace))
    assert same(got, outcome(lambda: old_parse(data, namespace=namespace)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(quick_items | items, max_size=6), st.sampled_from([None, "ns:default"]))
def test_parse_batch_matches_one_item_at_a_time(batch: list[Any], namespace: str | None) -> None:
    batch = [*batch, "not a dict", MemoryIn(text="t", namespace="n")]
    expected = [outcome(old_one, raw, namespace, DIM) for raw in batch]
    if any(isinstance(e, str) and not e.startswith("ValidationError") for e in expected):
        return  # e.g. OverflowError: let through pydantic by both paths, not an item's error
    got = [
        g if isinstance(g, MemoryIn) else f"{type(g).__name__}:{g}"
        for g in records.parse_batch(batch, namespace, DIM)
    ]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert same(g, e), (g, e)


def test_quick_parse_takes_the_common_item() -> None:
    vec = np.ones(DIM, np.float32)
    data = {"text": "t", "namespace": "n", "kind": "semantic", "embedding": vec}
    got = quick_parse({**data, "metadata": {"source": "x", "turn": 3, "ok": True}})
    assert got is not None and got.metadata == {"source": "x", "turn": 3, "ok": True}
    assert got.model_fields_set == {"text", "namespace", "kind", "embedding", "metadata"}
    assert quick_parse({**data, "embedding": [1.0, math.nan]}, finite=False) is not None
    assert quick_parse({**data, "embedding": [1.0, math.nan]}) is None
    assert quick_parse({**data, "pinned": True}) is None  # not a quick field: pydantic's


class Key(str):
    pass


def test_quick_parse_leaves_str_subclasses_to_pydantic() -> None:
    """pydantic turns a str subclass key into a str: the quick path must not keep it."""
    data = {"text": "t", "namespace": "n", "metadata": {Key("k"): 1}}
    assert quick_parse(data) is None
    assert [type(k) for k in MemoryIn.parse(data).metadata] == [str]
    assert quick_parse({"text": Key("t"), "namespace": "n"}) is None


def test_parse_batch_finds_each_bad_vector_in_a_batch() -> None:
    good = {"text": "t", "namespace": "n", "embedding": np.ones(DIM, np.float32)}
    nan = {**good, "embedding": np.full(DIM, np.nan, np.float32)}
    zero = {**good, "embedding": np.zeros(DIM, np.float32)}
    short = {**good, "embedding": np.ones(DIM - 1, np.float32)}
    got = records.parse_batch([good, nan, good, zero, short, good], None, DIM)
    assert [isinstance(g, MemoryIn) for g in got] == [True, False, True, False, False, True]
    assert "NaN" in str(got[1]) and "zeros" in str(got[3]) and "dimension" in str(got[4])
    assert all(g.field == "embedding" for g in (got[1], got[3], got[4]))


@settings(max_examples=500, deadline=None)
@given(metadata, st.sampled_from([40, 16_384]))
def test_check_metadata_accepts_and_refuses_as_before(meta: Any, limit: int) -> None:
    def run(fn: Any) -> Any:
        try:
            return ("ok", fn(meta, limit))
        except ValueError as exc:
            return ("error", str(exc))

    assert run(check_metadata) == run(old_check_metadata)


def test_check_metadata_bounds_big_ints_and_long_strings() -> None:
    assert check_metadata({"n": 10**30, "s": "ü" * 100}) == {"n": 10**30, "s": "ü" * 100}
    with pytest.raises(ValueError, match="bytes as JSON"):
        check_metadata({"s": "x" * 50}, max_bytes=40)
    with pytest.raises(ValueError, match="finite"):
        check_metadata({"f": math.inf})


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4), scalars | st.lists(scalars, max_size=3), max_size=5))
def test_metadata_json_is_schema_dump_metadata(meta: dict[str, Any]) -> None:
    assert records._dump_metadata(meta) == sch.dump_metadata(meta)


# -- encoding and the transaction ---------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False))
def test_numbers_are_sent_as_hiredis_would_send_them(n: int, f: float) -> None:
    ints = codec._decimals(pa.chunked_array([pa.array([n, None], pa.int64())]))
    assert pack_command(("X", ints[0])) == pack_command(("X", n)) and ints[1] is None  # type: ignore[arg-type]
    assert pack_command(("X", codec._floats([f])[0])) == pack_command(("X", f))  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=8))
def test_batches_and_single_rows_encode_numbers_alike(values: list[int | None]) -> None:
    """Arrow's path (a batch of `_ARROW_DECIMALS_FROM` rows or more) and Python's (a
    few rows) give the same bytes, for integers and for timestamps."""
    big = values * (codec._ARROW_DECIMALS_FROM // len(values) + 1)
    assert len(big) >= codec._ARROW_DECIMALS_FROM > len(values)
    for typ in (pa.int64(), sch.TS):
        few = codec._decimals(pa.chunked_array([pa.array(values, typ)]))
        many = codec._decimals(pa.chunked_array([pa.array(big, typ)]))
        assert many[: len(values)] == few
        assert few == [None if v is None else str(v).encode() for v in values]


def old_rows(keys: list[str], cols: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    names = [(n, cols[n]) for n in sch.COLUMNS]
    return [
        ("HSET", key, *[x for n, c in names if c[i] is not None for x in (n, c[i])])
        for i, key in enumerate(keys)
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"expires_at": [None, T0 + timedelta(days=1), None, None]},
        {"superseded_by": ["x", None, "y", None], "name": [None, None, None, "p"]},
        {"source_ids": pa.array([None, ["a"], None, []], pa.list_(pa.string()))},
        {"pinned": pa.array([None, True, False, None], pa.bool_())},
    ],
)
def test_hset_rows_are_the_per_field_rows(overrides: dict[str, Any]) -> None:
    table = make_table("a", 4, **overrides)
    cols = codec.encode_columns(table)
    keys = [f"k:{i}" for i in cols["id"]]
    assert codec.hset_commands(keys, table, cols) == old_rows(keys, cols)


@pytest.fixture
def tier(redis_client: redis.Redis, prefix: str, redis_url: str) -> HotTier:
    return HotTier(redis_client, Keys(prefix), DIM, redis_url)


def test_upsert_of_a_repeated_id_keeps_only_its_last_row(tier: HotTier) -> None:
    """DEL and HSET stay paired per row: a later row replaces an earlier one whole."""
    first = make_table("a", 1, expires_at=[T0 + timedelta(days=1)], name=["p"])
    last = make_table("a", 1, seed=0, text=["second"])
    tier.put(pa.concat_tables([first, last]))
    got = by_id(tier.get(["a-0-0"]))["a-0-0"]
    assert got["text"] == "second" and got["expires_at"] is None and got["name"] is None


def test_one_put_indexes_every_namespace(tier: HotTier, redis_client: redis.Redis) -> None:
    tables = [make_table(ns, 3, seed=i) for i, ns in enumerate(["a", "b", "c"])]
    tier.add_new(pa.concat_tables(tables))
    assert tier.namespaces() == {"a", "b", "c"}
    members = redis_client.smembers(tier.keys.namespaces())
    assert members == {b"a", b"b", b"c"}
    assert all(redis_client.get(tier.keys.version(ns)) == b"1" for ns in "abc")
    assert by_id(tier.get([f"b-1-{i}" for i in range(3)])) == by_id(tables[1])
