"""The checks on a memory's fields, shared by the models (`tiermem.model`), the
fast batch parser (`model.quick_parse`) and import (`tiermem.transfer`):
namespace names, text and metadata sizes, flat metadata values, vectors.

Each raises ValueError with a message naming what is wrong; the callers turn
it into a `ValidationError` for the field.

>>> check_namespace("user:alice")
'user:alice'
>>> check_metadata({"source": "chat", "turn": 3})
{'source': 'chat', 'turn': 3}
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from tiermem.errors import ValidationError

NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/=+-]{0,199}$")
NAMESPACE_HELP = (
    "1-200 characters from A-Z a-z 0-9 _ . : @ / = + -, starting with a letter or digit"
)
MAX_TEXT_BYTES = 32_768
MAX_METADATA_BYTES = 16_384
MAX_METADATA_KEY = 128


def to_vector(value: Any, finite: bool = True) -> np.ndarray:
    """`value` as a contiguous float32 1-d vector; finite unless `finite` is False."""
    try:
        with np.errstate(over="ignore"):  # a too-large value becomes inf: refused below
            arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError("must be a sequence of numbers") from exc
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"must be a non-empty 1-d vector, got shape {arr.shape}")
    if finite and not np.isfinite(arr).all():
        raise ValueError("must not contain NaN or infinite values")
    return np.ascontiguousarray(arr)


def check_namespace(ns: str) -> str:
    """Return `ns` if it is a safe namespace, else raise ValidationError."""
    if not isinstance(ns, str) or not NAMESPACE_RE.match(ns):
        raise ValidationError(f"must be {NAMESPACE_HELP} (got {ns!r})", field="namespace")
    return ns


def check_scalar(key: str, value: Any) -> None:
    """Refuse a metadata value that is not a finite JSON scalar."""
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"value of {key!r} must be a finite number")
        return
    raise ValueError(
        f"value of {key!r} must be str, int, float, bool, null or a list of those, "
        f"not {type(value).__name__}"
    )


# JSON bytes of one str char at most: ASCII-escaped, a control char is \u001f (6)
# and a char beyond the BMP a surrogate pair \ud800\udc00 (12).
ESCAPED = 12


def check_metadata(meta: Any, max_bytes: int = MAX_METADATA_BYTES) -> dict[str, Any]:
    """Validate flat JSON metadata; returns it unchanged or raises ValueError."""
    if not isinstance(meta, dict):
        raise ValueError(f"must be a flat JSON object (a dict), not {type(meta).__name__}")
    bound = 2  # an upper bound on the JSON size, so small metadata is not encoded twice
    for key, value in meta.items():
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY:
            raise ValueError(f"keys must be non-empty strings of <= {MAX_METADATA_KEY} chars")
        bound += ESCAPED * len(key) + 7  # json_bound(key), and ':' ',' '[]'
        kind = type(value)
        if kind is str:  # the common exact types inline: ~2x faster per batch
            bound += ESCAPED * len(value) + 3
        elif kind is int:
            bound += len(str(value)) + 1
        elif kind is bool or value is None:
            bound += 26
        else:
            for item in value if isinstance(value, list) else [value]:
                check_scalar(key, item)
                bound += json_bound(item)
    if bound <= max_bytes:
        return meta
    size = len(json.dumps(meta, separators=(",", ":")).encode())
    if size > max_bytes:
        raise ValueError(f"is {size} bytes as JSON; the limit is {max_bytes}")
    return meta


def json_bound(value: str | bool | int | float | None) -> int:
    """At least the UTF-8 bytes of `value` as JSON (`ESCAPED` a char at most)."""
    if isinstance(value, str):
        return ESCAPED * len(value) + 3  # quotes, and the list comma
    if isinstance(value, int) and not isinstance(value, bool):
        return len(str(value)) + 1  # ints are unbounded
    return 26  # null, true, false, or a float's repr (at most 24 chars), and the comma


def check_text(v: str) -> str:
    """`v` if it is non-blank text within `MAX_TEXT_BYTES` as UTF-8."""
    if not v or v.isspace():
        raise ValueError("must not be empty")
    if len(v) * 4 > MAX_TEXT_BYTES:  # else it fits whatever it encodes to (<= 4 B a char)
        size = len(v.encode())
        if size > MAX_TEXT_BYTES:
            raise ValueError(f"is {size} bytes; the limit is {MAX_TEXT_BYTES}")
    return v
