"""Every bad input of DESIGN.md raises ValidationError naming the field, and writes nothing."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tiermem
from tests.conftest import DIM
from tiermem.fields import MAX_METADATA_BYTES, MAX_TEXT_BYTES, check_metadata

GOOD: dict[str, Any] = {"text": "a fine memory", "namespace": "user:alice"}

BAD_ITEMS = [
    ("text", {"text": ""}),
    ("text", {"text": "   \n"}),
    ("text", {"text": "x" * (MAX_TEXT_BYTES + 1)}),
    ("text", {"text": 42}),
    ("embedding", {"embedding": [0.1] * (DIM + 1)}),
    ("embedding", {"embedding": [0.1] * (DIM - 1) + [float("nan")]}),
    ("embedding", {"embedding": [0.1] * (DIM - 1) + [float("inf")]}),
    ("embedding", {"embedding": [0.0] * DIM}),
    ("embedding", {"embedding": "not a vector"}),
    ("metadata", {"metadata": {"nested": {"a": 1}}}),
    ("metadata", {"metadata": {"xs": [[1, 2]]}}),
    ("metadata", {"metadata": {"f": float("nan")}}),
    ("metadata", {"metadata": {"blob": "x" * MAX_METADATA_BYTES}}),
    ("metadata", {"metadata": ["not", "a", "dict"]}),
    ("metadata", {"metadata": {"": 1}}),
    ("namespace", {"namespace": ""}),
    ("namespace", {"namespace": "user alice"}),
    ("namespace", {"namespace": "user:{alice}"}),
    ("namespace", {"namespace": "ns*"}),
    ("namespace", {"namespace": "x" * 201}),
    ("kind", {"kind": "dream"}),
    ("importance", {"importance": 1.5}),
    ("importance", {"importance": -0.1}),
    ("importance", {"importance": float("nan")}),
    ("ttl", {"ttl": -5}),
    ("ttl", {"ttl": 0}),
    ("created_at", {"created_at": datetime(2024, 1, 1)}),  # naive
    ("colour", {"colour": "red"}),  # unknown field (add_many dicts only)
]
ADD_CASES = BAD_ITEMS[:-1]


def _count(mem: tiermem.Engine) -> int:
    return sum(1 for _ in mem.scan())


@pytest.mark.parametrize(
    ("field", "patch"), ADD_CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(ADD_CASES)]
)
def test_add_rejects_bad_input_and_writes_nothing(
    store: tiermem.Engine, field: str, patch: dict[str, Any]
) -> None:
    item = {**GOOD, **patch}
    text = item.pop("text")
    with pytest.raises(tiermem.ValidationError) as info:
        store.add(text, **item)
    assert info.value.field == field, str(info.value)
    assert field in str(info.value)
    assert _count(store) == 0


@pytest.mark.parametrize(("field", "patch"), BAD_ITEMS)
def test_add_many_partial_success(store: tiermem.Engine, field: str, patch: dict[str, Any]) -> None:
    res = store.add_many([GOOD, {**GOOD, **patch}, {**GOOD, "text": "another"}])
    assert not res.ok
    assert res.ids[0] and res.ids[2] and res.ids[1] is None
    assert set(res.errors) == {1}
    assert isinstance(res.errors[1], tiermem.ValidationError)
    assert res.errors[1].field == field
    assert {m.id for m in store.scan()} == {res.ids[0], res.ids[2]}


def test_add_many_rejects_non_dict_items(store: tiermem.Engine) -> None:
    res = store.add_many(["just a string", GOOD])  # type: ignore[list-item]
    assert set(res.errors) == {0} and res.ids[1]


def test_search_bad_inputs(store: tiermem.Engine) -> None:
    store.add("tea", namespace="user:alice")
    cases: list[tuple[str, dict[str, Any]]] = [
        ("namespace", {"namespace": "bad ns"}),
        ("k", {"k": 0}),
        ("k", {"k": 10_001}),
        ("kinds", {"kinds": ["dream"]}),
        ("where", {"where": {"a": {"$regex": "x"}}}),
        ("where", {"where": {"a": {"$in": 3}}}),
        ("where", {"where": {"a": {"b": 1, "$gt": 1}}}),
        ("since", {"since": datetime(2024, 1, 1)}),
        ("score", {"score": "best"}),
    ]
    for field, kw in cases:
        kw = {"namespace": "user:alice", **kw}
        with pytest.raises(tiermem.ValidationError) as info:
            store.search("tea", **kw)
        assert info.value.field == field, (kw, str(info.value))
    with pytest.raises(tiermem.ValidationError, match="query"):
        store.search("", namespace="user:alice")
    with pytest.raises(tiermem.ValidationError, match="query"):
        store.search(np.ones(DIM + 1), namespace="user:alice")


def test_update_validates_and_writes_nothing(store: tiermem.Engine) -> None:
    m = store.add("original", namespace="user:alice", metadata={"a": 1})
    for kw in ({"text": ""}, {"metadata": {"x": {"y": 1}}}, {"importance": 2.0}):
        with pytest.raises(tiermem.ValidationError):
            store.update(m.id, **kw)
    assert store.get(m.id).text == "original"
    assert store.get(m.id).version == 1


def test_unknown_ids(store: tiermem.Engine) -> None:
    with pytest.raises(tiermem.NotFound):
        store.get("nope")
    with pytest.raises(tiermem.NotFound):
        store.update("nope", text="x")
    with pytest.raises(tiermem.NotFound):
        store.demote("nope")
    assert store.delete("nope") is False
    assert store.get_many(["nope"]) == {}


def test_moves_in_the_wrong_direction(store: tiermem.Engine) -> None:
    m = store.add("x", namespace="a")
    store.demote(m.id, to="l2")
    with pytest.raises(tiermem.ValidationError, match="to"):
        store.promote(m.id, to="l3")
    with pytest.raises(tiermem.ValidationError, match="to"):
        store.demote(m.id, to="l1")
    with pytest.raises(tiermem.ValidationError, match="tier"):
        store.demote(m.id, to="l9")
    assert store.get(m.id).tier == "l2"


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_metadata = st.dictionaries(
    st.text(min_size=1, max_size=20), _scalars | st.lists(_scalars, max_size=4), max_size=6
)


@given(meta=_metadata, limit=st.integers(2, 400))
@example(meta={'00"\x1f\x1f\x1f\x1f\x1f' + "\U00010000" * 6: 1e6}, limit=119)  # 12 B a char
def test_metadata_size_limit_is_exact(meta: dict[str, object], limit: int) -> None:
    """The size check may skip encoding small metadata, never change the verdict."""
    size = len(json.dumps(meta, separators=(",", ":")).encode())
    if size <= limit:
        assert check_metadata(meta, limit) is meta
    else:
        with pytest.raises(ValueError, match="bytes as JSON"):
            check_metadata(meta, limit)
