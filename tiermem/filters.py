"""Search filters: kinds, metadata `where`, time range, expiry, supersession.

One `Filter` is built per search and applied by each tier: `mask()` over an
Arrow table (L1, L2, and L3's candidates) and `sql()` for the columns
DuckDB can test directly (L3). Metadata `where` semantics:

- ``{"k": v}``: equal (a list value matches when it contains v; a missing
  key counts as null);
- ``{"k": {"$in": [..]}}``: equal to any;
- ``{"k": {"$gt"|"$gte"|"$lt"|"$lte": x}}``: ordered comparison with a
  number or a string of the same type (other types never match).

>>> f = Filter(where=parse_where({"lang": {"$in": ["en", "fr"]}}))
>>> f.match_metadata({"lang": "fr"}), f.match_metadata({"lang": "de"})
(True, False)
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiermem.errors import ValidationError

RANGE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
Condition = tuple[str, str, Any]  # (key, op, operand); op is "$eq", "$in" or a range op


def _scalar(key: str, value: Any) -> Any:
    ok = value is None or isinstance(value, str | bool | int)
    if isinstance(value, float):
        ok = math.isfinite(value)
    if not ok:
        raise ValidationError(
            f"value for {key!r} must be a JSON scalar, got {value!r}", field="where"
        )
    return value


def parse_where(where: dict[str, Any] | None) -> tuple[Condition, ...]:
    """Validate a `where` dict into conditions; raises ValidationError on bad input."""
    if where is None:
        return ()
    if not isinstance(where, dict):
        raise ValidationError(
            "must be a dict of metadata key -> value or {op: value}", field="where"
        )
    conds: list[Condition] = []
    for key, spec in where.items():
        if not isinstance(key, str) or not key:
            raise ValidationError("keys must be non-empty strings", field="where")
        if not isinstance(spec, dict):
            conds.append((key, "$eq", _scalar(key, spec)))
            continue
        for op, operand in spec.items():
            if op == "$in":
                if not isinstance(operand, list | tuple | set):
                    raise ValidationError(f"$in for {key!r} needs a list", field="where")
                conds.append((key, "$in", tuple(_scalar(key, v) for v in operand)))
            elif op in RANGE_OPS:
                if isinstance(operand, bool) or not isinstance(operand, int | float | str):
                    raise ValidationError(
                        f"{op} for {key!r} needs a number or string", field="where"
                    )
                conds.append((key, op, _scalar(key, operand)))
            else:
                raise ValidationError(
                    f"unknown operator {op!r} for {key!r}; use $in, $gt, $gte, $lt, $lte",
                    field="where",
                )
    return tuple(conds)


def _eq(value: Any, operand: Any) -> bool:
    if isinstance(value, list):
        return any(_eq(v, operand) for v in value)
    # bool is an int in Python: keep True from matching 1
    return value == operand and isinstance(value, bool) == isinstance(operand, bool)


def _ordered(value: Any, op: str, operand: Any) -> bool:
    num = (int, float)
    if isinstance(value, bool) or not isinstance(value, (*num, str)):
        return False
    if isinstance(value, str) != isinstance(operand, str):
        return False
    return RANGE_OPS[op](value, operand)


@dataclass(frozen=True)
class Filter:
    """What a search may return. `now` hides expired memories."""

    kinds: frozenset[str] | None = None
    where: tuple[Condition, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    now: datetime | None = None
    include_superseded: bool = False

    def match_metadata(self, meta: dict[str, Any]) -> bool:
        for key, op, operand in self.where:
            value = meta.get(key)
            if op == "$eq":
                ok = _eq(value, operand)
            elif op == "$in":
                ok = any(_eq(value, o) for o in operand)
            else:
                ok = _ordered(value, op, operand)
            if not ok:
                return False
        return True

    def mask(self, table: pa.Table) -> np.ndarray:
        """Boolean mask of the rows of `table` (schema.schema) that pass."""
        n = table.num_rows
        keep = np.ones(n, dtype=bool)
        if n == 0:
            return keep
        if self.kinds is not None:
            kinds = pa.array(sorted(self.kinds), pa.string())
            keep &= pc.is_in(table.column("kind"), value_set=kinds).to_numpy(zero_copy_only=False)
        if self.since is not None or self.until is not None:
            created = table.column("created_at")
            if self.since is not None:
                keep &= _np(pc.greater_equal(created, pa.scalar(self.since, created.type)))
            if self.until is not None:
                keep &= _np(pc.less_equal(created, pa.scalar(self.until, created.type)))
        if self.now is not None:
            exp = table.column("expires_at")
            keep &= _np(pc.fill_null(pc.greater(exp, pa.scalar(self.now, exp.type)), True))
        if not self.include_superseded:
            keep &= _np(pc.is_null(table.column("superseded_by")))
        if self.where:
            meta = table.column("metadata")
            for i in np.flatnonzero(keep):
                keep[i] = self.match_metadata(json.loads(meta[int(i)].as_py()))
        return keep

    def columns(self) -> list[str]:
        """The columns `mask` reads under this filter (a reader may fetch only these)."""
        wanted = {
            "kind": self.kinds is not None,
            "created_at": self.since is not None or self.until is not None,
            "expires_at": self.now is not None,
            "superseded_by": not self.include_superseded,
            "metadata": bool(self.where),
        }
        return [c for c, needed in wanted.items() if needed]

    def sql(self) -> tuple[str, list[Any]]:
        """A WHERE clause (without `where`) for the plain columns, and its params."""
        parts: list[str] = ["TRUE"]
        params: list[Any] = []
        if self.kinds is not None:
            parts.append(f"kind IN ({', '.join('?' for _ in self.kinds)})")
            params += sorted(self.kinds)
        if self.since is not None:
            parts.append("created_at >= ?")
            params.append(self.since)
        if self.until is not None:
            parts.append("created_at <= ?")
            params.append(self.until)
        if self.now is not None:
            parts.append("(expires_at IS NULL OR expires_at > ?)")
            params.append(self.now)
        if not self.include_superseded:
            parts.append("superseded_by IS NULL")
        return " AND ".join(parts), params


def _np(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)
