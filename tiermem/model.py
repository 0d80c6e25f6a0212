"""The records users see: `Memory`, `MemoryIn` (validated input), `Hit`,
`BatchResult`, `Stats`, and the lifecycle's `Plan`/`Action`/`JobReport`.

Validation happens once, here, at the edge; everything behind it trusts
its input. Stored records are rebuilt with ``model_construct`` (no second
validation on the read path).

>>> m = MemoryIn(text="likes tea", namespace="user:alice")
>>> m.kind, m.importance
('episodic', 0.5)
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator
from pydantic import ValidationError as PydanticValidationError

from tiermem.errors import TierMemError, ValidationError

Kind = Literal["episodic", "semantic", "procedural"]
TierName = Literal["l1", "l2", "l3"]
KINDS: tuple[Kind, ...] = ("episodic", "semantic", "procedural")
TIERS: tuple[TierName, ...] = ("l1", "l2", "l3")  # hot to cold

NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/=+-]{0,199}$")
NAMESPACE_HELP = (
    "1-200 characters from A-Z a-z 0-9 _ . : @ / = + -, starting with a letter or digit"
)
MAX_TEXT_BYTES = 32_768
MAX_METADATA_BYTES = 16_384
MAX_METADATA_KEY = 128


def _to_vector(value: Any, finite: bool = True) -> np.ndarray:
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


Vector = Annotated[np.ndarray, PlainSerializer(lambda v: v.tolist(), return_type=list)]


def check_namespace(ns: str) -> str:
    """Return `ns` if it is a safe namespace, else raise ValidationError."""
    if not isinstance(ns, str) or not NAMESPACE_RE.match(ns):
        raise ValidationError(f"must be {NAMESPACE_HELP} (got {ns!r})", field="namespace")
    return ns


def _check_scalar(key: str, value: Any) -> None:
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
        bound += ESCAPED * len(key) + 7  # _json_bound(key), and ':' ',' '[]'
        kind = type(value)
        if kind is str:  # the common exact types inline: ~2x faster per batch
            bound += ESCAPED * len(value) + 3
        elif kind is int:
            bound += len(str(value)) + 1
        elif kind is bool or value is None:
            bound += 26
        else:
            for item in value if isinstance(value, list) else [value]:
                _check_scalar(key, item)
                bound += _json_bound(item)
    if bound <= max_bytes:
        return meta
    size = len(json.dumps(meta, separators=(",", ":")).encode())
    if size > max_bytes:
        raise ValueError(f"is {size} bytes as JSON; the limit is {max_bytes}")
    return meta


def _json_bound(value: str | bool | int | float | None) -> int:
    """At least the UTF-8 bytes of `value` as JSON (`ESCAPED` a char at most)."""
    if isinstance(value, str):
        return ESCAPED * len(value) + 3  # quotes, and the list comma
    if isinstance(value, int) and not isinstance(value, bool):
        return len(str(value)) + 1  # ints are unbounded
    return 26  # null, true, false, or a float's repr (at most 24 chars), and the comma


def _check_text(v: str) -> str:
    if not v or v.isspace():
        raise ValueError("must not be empty")
    if len(v) * 4 > MAX_TEXT_BYTES:  # else it fits whatever it encodes to (<= 4 B a char)
        size = len(v.encode())
        if size > MAX_TEXT_BYTES:
            raise ValueError(f"is {size} bytes; the limit is {MAX_TEXT_BYTES}")
    return v


class MemoryIn(BaseModel):
    """One memory to write, validated. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    text: str
    namespace: str
    kind: Kind = "episodic"
    metadata: dict[str, Any] = Field(default_factory=dict)
    importance: float = Field(0.5, ge=0.0, le=1.0, allow_inf_nan=False)
    embedding: Vector | None = None
    ttl: timedelta | None = None
    pinned: bool = False
    created_at: datetime | None = None
    name: str | None = None
    supersedes: str | None = None

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        return _check_text(v)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not NAMESPACE_RE.match(v):
            raise ValueError(f"must be {NAMESPACE_HELP} (got {v!r})")
        return v

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, v: Any) -> Any:
        return check_metadata({} if v is None else v)

    @field_validator("embedding", mode="before")
    @classmethod
    def _embedding(cls, v: Any) -> Any:
        return None if v is None else _to_vector(v)

    @field_validator("ttl", mode="before")
    @classmethod
    def _ttl(cls, v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool):
            if not math.isfinite(v) or v <= 0:
                raise ValueError("must be a positive number of seconds")
            return timedelta(seconds=v)
        if isinstance(v, timedelta) and v <= timedelta(0):
            raise ValueError("must be positive")
        return v

    @field_validator("created_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.utcoffset() is None:
            raise ValueError("must be timezone-aware (e.g. datetime.now(UTC))")
        return v

    @classmethod
    def parse(cls, data: Any, **defaults: Any) -> MemoryIn:
        """Validate a dict (or MemoryIn), raising tiermem.ValidationError naming the field."""
        if isinstance(data, MemoryIn):
            return data.model_copy(update={k: v for k, v in defaults.items() if v is not None})
        if not isinstance(data, dict):
            raise ValidationError(f"each item must be a dict, not {type(data).__name__}")
        merged = {**{k: v for k, v in defaults.items() if v is not None}, **data}
        if cls is MemoryIn and (quick := quick_parse(merged)) is not None:
            return quick
        try:
            return cls.model_validate(merged)
        except PydanticValidationError as exc:
            raise translate(exc) from None


QUICK_FIELDS = frozenset({"text", "namespace", "kind", "metadata", "importance", "embedding"})


def quick_parse(data: dict[str, Any], finite: bool = True) -> MemoryIn | None:
    """`MemoryIn.model_validate(data)` for the common item (exact types, quick fields
    only) without pydantic's per-field calls; None when unsure: the caller validates
    in full, so every error still comes from pydantic. `finite=False` leaves the
    NaN/inf check to a caller that checks a whole batch's vectors at once."""
    if not QUICK_FIELDS.issuperset(data):
        return None
    text, ns, kind = data.get("text"), data.get("namespace"), data.get("kind", "episodic")
    meta, imp, vec = data.get("metadata"), data.get("importance", 0.5), data.get("embedding")
    if type(text) is not str or type(ns) is not str or type(imp) is not float:
        return None
    if type(kind) is not str or kind not in KINDS or not 0.0 <= imp <= 1.0:
        return None
    meta = {} if meta is None else meta
    if type(meta) is not dict or not all(type(k) is str for k in meta):
        return None  # pydantic would make str subclass keys plain str
    try:
        _check_text(text)
        meta = dict(check_metadata(meta))  # pydantic's copy
        vec = None if vec is None else _to_vector(vec, finite)
    except ValueError:
        return None
    if not NAMESPACE_RE.match(ns):
        return None
    fields: dict[str, Any] = {
        "text": text, "namespace": ns, "kind": kind, "metadata": meta, "importance": imp,
        "embedding": vec, "ttl": None, "pinned": False, "created_at": None, "name": None,
        "supersedes": None,
    }  # fmt: skip
    return _instance(MemoryIn, fields, set(data))


M = TypeVar("M", bound=BaseModel)


def _instance(cls: type[M], fields: dict[str, Any], given: set[str]) -> M:
    """A `cls` holding `fields` (every field's valid value, in field order), as
    validation would build it; `given` are the fields set explicitly."""
    m = cls.__new__(cls)
    object.__setattr__(m, "__dict__", fields)
    object.__setattr__(m, "__pydantic_fields_set__", given)
    object.__setattr__(m, "__pydantic_extra__", None)
    object.__setattr__(m, "__pydantic_private__", None)
    return m


def translate(exc: PydanticValidationError) -> ValidationError:
    """A pydantic error as ours: the first problem, naming its field."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    return ValidationError(msg, field=field)


class Memory(BaseModel):
    """A stored memory. `tier` says where it lives now (read-only)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: str
    namespace: str
    kind: Kind
    text: str
    embedding: Vector = Field(repr=False)
    metadata: dict[str, Any]
    importance: float
    created_at: datetime
    updated_at: datetime
    last_accessed_at: datetime
    access_count: int = 0
    expires_at: datetime | None = None
    pinned: bool = False
    version: int = 1
    source_ids: list[str] = Field(default_factory=list)
    superseded_by: str | None = None
    name: str | None = None
    tiered_at: datetime | None = None  # when it entered its current tier
    tier: TierName = "l1"

    @classmethod
    def trusted(cls, fields: dict[str, Any]) -> Memory:
        """A Memory from every field's already-valid value, in field order; unchecked.

        For rows the tiers read back (validated when written). It is what
        `model_construct` does, without its per-field alias and default walk
        (~10 µs a memory, most of a search's Python time).
        """
        return _instance(cls, fields, set(fields))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Memory):
            return NotImplemented
        a, b = self.__dict__, other.__dict__
        return a.keys() == b.keys() and all(
            np.array_equal(a[k], b[k]) if k == "embedding" else a[k] == b[k] for k in a
        )

    __hash__ = None  # type: ignore[assignment]


class Hit(BaseModel):
    """A search result: the memory, its score (higher is better) and its tier."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    memory: Memory
    score: float
    tier: TierName

    @classmethod
    def trusted(cls, memory: Memory, score: float, tier: TierName) -> Hit:
        """A Hit from already-valid values (a search's own results); unchecked."""
        fields = {"memory": memory, "score": score, "tier": tier}
        return _instance(cls, fields, {"memory", "score", "tier"})


class BatchResult(BaseModel):
    """Outcome of `add_many`: per item an id, or an error at that index."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    ids: list[str | None]
    errors: dict[int, TierMemError] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


class TierStats(BaseModel):
    """Size of one tier: memories and approximate bytes."""

    count: int = 0
    bytes: int = 0
    namespaces: int = 0


class Stats(BaseModel):
    """What `Engine.stats()` returns.

    `tiers` maps l1/l2/l3 to TierStats (also as `.l1`, `.l2`, `.l3`);
    `hits`/`misses` count reads served per tier since open.
    """

    tiers: dict[TierName, TierStats]
    kinds: dict[str, int]
    hits: dict[TierName, int]
    misses: int
    jobs: dict[str, int] = Field(default_factory=dict)

    @property
    def l1(self) -> TierStats:
        return self.tiers["l1"]

    @property
    def l2(self) -> TierStats:
        return self.tiers["l2"]

    @property
    def l3(self) -> TierStats:
        return self.tiers["l3"]

    @property
    def count(self) -> int:
        return sum(t.count for t in self.tiers.values())

    @property
    def hit_ratio(self) -> dict[TierName, float]:
        total = sum(self.hits.values()) + self.misses
        return {t: (n / total if total else 0.0) for t, n in self.hits.items()}


class Action(BaseModel):
    """One step of a plan: move (or delete) one memory, and why."""

    id: str
    namespace: str
    action: Literal["move", "delete", "merge", "forget"]
    src: TierName
    dst: TierName | None = None
    reason: str


class Plan(BaseModel):
    """What a job would do, computed without changing anything.

    `notes` are things the job will not act on but a user should know
    (e.g. a tier over capacity whose policy says `on_full: warn`).
    """

    job: str
    now: datetime
    actions: list[Action] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class JobReport(BaseModel):
    """What a job did."""

    job: str
    moved: int = 0
    merged: int = 0
    deleted: int = 0
    seconds: float = 0.0
    errors: list[str] = Field(default_factory=list)
    run: str = ""  # correlation id, also in the events log
    notes: list[str] = Field(default_factory=list)
