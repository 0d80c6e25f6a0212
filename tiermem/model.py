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

import math
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator
from pydantic import ValidationError as PydanticValidationError

from tiermem.errors import TierMemError, ValidationError
from tiermem.fields import (
    NAMESPACE_HELP,
    NAMESPACE_RE,
    check_metadata,
    check_text,
    to_vector,
)

Kind = Literal["episodic", "semantic", "procedural"]
TierName = Literal["l1", "l2", "l3"]
KINDS: tuple[Kind, ...] = ("episodic", "semantic", "procedural")
TIERS: tuple[TierName, ...] = ("l1", "l2", "l3")  # hot to cold
Vector = Annotated[np.ndarray, PlainSerializer(lambda v: v.tolist(), return_type=list)]


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
        return check_text(v)

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
        return None if v is None else to_vector(v)

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
        check_text(text)
        meta = dict(check_metadata(meta))  # pydantic's copy
        vec = None if vec is None else to_vector(vec, finite)
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
