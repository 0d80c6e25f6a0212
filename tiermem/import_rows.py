"""One row of an import file, checked like `add` checks its input (namespace,
text, vector dimension, types and ranges), defaults filled in; a bad row is
a `RowError` naming the row and the field (`transfer.import_file`)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tiermem import schema
from tiermem.errors import ValidationError
from tiermem.fields import MAX_TEXT_BYTES, check_metadata, check_namespace
from tiermem.model import KINDS

MAX_ID = 200
_IGNORED = frozenset({"tier"})  # a Memory dumped as JSON carries it; where it lands is ours


class RowError(ValidationError):
    """A bad row in an import file: `row` (1-based) and `field` name it."""

    def __init__(self, row: int, field: str, message: str) -> None:
        super().__init__(f"row {row}: {field}: {message}")
        self.row = row
        self.field = field


def validate_row(n: int, raw: dict[str, Any], dim: int, now: datetime) -> dict[str, Any]:
    """One row checked like `add` checks input, with defaults filled in; RowError if bad."""
    for key in raw:
        if key not in schema.COLUMNS and key not in _IGNORED:
            raise RowError(n, str(key), "unknown field")
    out: dict[str, Any] = {}
    id_ = raw.get("id")
    if not isinstance(id_, str) or not id_.strip() or len(id_) > MAX_ID:
        raise RowError(n, "id", f"must be a non-empty string of <= {MAX_ID} characters")
    if any(c in id_ for c in "\t\n\r"):
        raise RowError(n, "id", "must not contain tabs or newlines")
    out["id"] = id_
    try:
        out["namespace"] = check_namespace(raw.get("namespace"))  # type: ignore[arg-type]
    except ValidationError as exc:
        raise RowError(n, "namespace", str(exc).removeprefix("namespace: ")) from None
    kind = raw.get("kind", "episodic")
    if kind not in KINDS:
        raise RowError(n, "kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    out["kind"] = kind
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise RowError(n, "text", "must be a non-empty string")
    if len(text.encode()) > MAX_TEXT_BYTES:
        raise RowError(n, "text", f"is longer than {MAX_TEXT_BYTES} bytes")
    out["text"] = text
    out["embedding"] = _vector(n, raw.get("embedding"), dim)
    out["metadata"] = _metadata(n, raw.get("metadata"))
    importance = raw.get("importance", 0.5)
    if not _number(importance) or not 0.0 <= importance <= 1.0:
        raise RowError(n, "importance", "must be a number from 0 to 1")
    out["importance"] = float(importance)
    out["created_at"] = _time(n, "created_at", raw.get("created_at")) or now
    for col in ("updated_at", "last_accessed_at"):
        out[col] = _time(n, col, raw.get(col)) or out["created_at"]
    out["expires_at"] = _time(n, "expires_at", raw.get("expires_at"))
    out["tiered_at"] = _time(n, "tiered_at", raw.get("tiered_at")) or now
    out["access_count"] = _int(n, "access_count", raw.get("access_count", 0), 0)
    out["version"] = _int(n, "version", raw.get("version", 1), 1)
    pinned = raw.get("pinned", False)
    if not isinstance(pinned, bool):
        raise RowError(n, "pinned", "must be true or false")
    out["pinned"] = pinned
    sources = raw.get("source_ids", [])
    if sources is None:
        sources = []
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise RowError(n, "source_ids", "must be a list of ids (strings)")
    out["source_ids"] = sources
    for col in ("superseded_by", "name"):
        value = raw.get(col)
        if value is not None and not isinstance(value, str):
            raise RowError(n, col, "must be a string or null")
        out[col] = value
    return out


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _int(n: int, field: str, v: Any, least: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < least:
        raise RowError(n, field, f"must be an integer >= {least}")
    return v


def _vector(n: int, v: Any, dim: int) -> np.ndarray:
    if v is None:
        raise RowError(n, "embedding", "is required")
    try:
        vec = np.asarray(v, dtype=np.float32)
    except (TypeError, ValueError):
        raise RowError(n, "embedding", "must be a list of numbers") from None
    if vec.ndim != 1:
        raise RowError(n, "embedding", "must be a flat list of numbers")
    if vec.shape[0] != dim:
        raise RowError(n, "embedding", f"has dimension {vec.shape[0]}, the store uses {dim}")
    if not np.isfinite(vec).all():
        raise RowError(n, "embedding", "must not contain NaN or infinite values")
    if not vec.any():
        raise RowError(n, "embedding", "must not be all zeros")
    return vec


def _metadata(n: int, v: Any) -> str:
    if v is None:
        v = {}
    if isinstance(v, str):  # Parquet (and our schema) carry it as JSON text
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            raise RowError(n, "metadata", "is not valid JSON") from None
    try:
        return schema.dump_metadata(check_metadata(v))
    except ValueError as exc:
        raise RowError(n, "metadata", str(exc)) from None


def _time(n: int, field: str, v: Any) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            raise RowError(n, field, f"is not an ISO-8601 time: {v!r}") from None
    if not isinstance(v, datetime):
        raise RowError(n, field, "must be an ISO-8601 time string")
    if v.utcoffset() is None:
        raise RowError(n, field, "must carry a UTC offset (e.g. 2025-01-01T00:00:00Z)")
    return v.astimezone(UTC)
