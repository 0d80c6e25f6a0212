"""The rules of one kind in a policy file (POLICY.md v1), and their values.

A policy file (`policy.Policy`) holds a section per kind (`KindPolicy`): where
new memories land, a TTL, rules per tier (`TierRules` for l1 and l2,
`L3Rules`), promotion (`PromoteRules`) and consolidation
(`ConsolidateRules`). Field defaults are the built-in defaults (`BUILTIN`).
Every model is frozen and refuses unknown keys; a bad value raises a
ValueError saying what was expected and what it got (`shown`), which
`policy.validate_policy` turns into a `PolicyError` naming the key path.

Values: durations ("90s", "15m", "1h", "30d", "2w" or seconds) and eviction
selectors (a built-in name or a `package.module:function` path, imported
when the policy is validated).
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from tiermem.model import KINDS, TIERS, Kind, TierName

# --- durations -------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_DURATION_HELP = 'a duration like "90s", "15m", "1h", "30d", "2w" or seconds'


def shown(value: Any) -> str:
    """A value as an error message shows it: JSON for strings, `null`, else repr."""
    return "null" if value is None else json.dumps(value) if isinstance(value, str) else repr(value)


def parse_duration(value: object) -> timedelta:
    """A `timedelta` from "90s", "15m", "1h", "30d", "2w", seconds (int/float >= 0) or a
    timedelta; ValueError saying what was expected otherwise. `None` is refused here;
    optional fields (`ttl`, `idle`, `retain`, ...) accept null before calling this."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"expected {_DURATION_HELP}, got {shown(value)}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected {_DURATION_HELP} (not negative), got {shown(value)}")
    return timedelta(seconds=seconds)


def format_duration(td: timedelta | None) -> str:
    """The shortest exact "90s"/"15m"/"1h"/"30d"/"2w" form (or "none")."""
    if td is None:
        return "none"
    seconds = td.total_seconds()
    for unit, size in sorted(_UNITS.items(), key=lambda u: -u[1]):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _positive(td: timedelta) -> timedelta:
    if td <= timedelta(0):
        raise ValueError(f"expected a positive duration, got {format_duration(td)}")
    return td


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]

# --- selectors -------------------------------------------------------------

BUILTIN_SELECTORS = frozenset(
    {"ttl", "lru", "lfu", "fifo", "s3fifo", "sieve", "score", "hyperbolic"}
)
_DOTTED_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def load_selector(path: str) -> Callable[..., Any]:
    """Import a custom selector named `package.module:function`; ValueError if it can't."""
    if not _DOTTED_RE.match(path):
        raise ValueError(
            f"expected one of {', '.join(sorted(BUILTIN_SELECTORS))} "
            f'or a dotted path "package.module:function", got {shown(path)}'
        )
    module_name, attr = path.split(":", 1)
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # an import can fail in any way; report it, don't crash
        raise ValueError(f"cannot import selector {shown(path)}: {exc}") from exc
    if not callable(obj):
        raise ValueError(f"selector {shown(path)} is not callable ({type(obj).__name__})")
    return obj  # type: ignore[no-any-return]


def _check_selector(name: str) -> str:
    if name not in BUILTIN_SELECTORS:
        load_selector(name)
    return name


Selector = Annotated[str, AfterValidator(_check_selector)]

# --- models ----------------------------------------------------------------


class Section(BaseModel):
    """A part of a policy file: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TierRules(Section):
    """Rules for one tier (l1 or l2) of one kind."""

    capacity: int | None = Field(None, ge=0, strict=True)  # memories per namespace; None: unbounded
    max_bytes: int | None = Field(None, ge=0, strict=True)  # bytes per namespace; None: unbounded
    evict: list[Selector] = Field(default_factory=lambda: ["lru"])  # victims, in order
    idle: Duration | None = None  # demote after this long without access
    age: Duration | None = None  # demote after this long in this tier, accessed or not
    on_full: Literal["evict", "warn", "reject"] = "evict"


class L3Rules(Section):
    """Rules for the cold tier."""

    retain: Duration | None = None  # delete for good after this long in l3; None: keep


class PromoteRules(Section):
    """`hits` accesses within `window` move a memory one tier up (the promote job).

    `on_read` (read-through; None: off): the `get` or `get_many` that brings
    a memory in L2 to this many accesses within `window` moves it into L1
    then and there, so a re-read working set is back in L1 after one read
    instead of at the next promote run; L1 over capacity then evicts (if its
    ``on_full`` is evict), as an add does. Search hits count as accesses but
    move nothing at the search (that would put moves on the search path); L3
    memories wait for the job (L3 is written in batches).
    """

    hits: int = Field(3, ge=1, strict=True)
    window: PositiveDuration = timedelta(hours=1)
    on_read: int | None = Field(None, ge=1, strict=True)


class ConsolidateRules(Section):
    """Cluster similar old memories of a namespace into one `into` memory."""

    every: PositiveDuration = timedelta(hours=6)
    similarity: float = Field(0.85, gt=0.0, le=1.0)
    min_cluster: int = Field(3, ge=2, strict=True)
    min_age: Duration = timedelta(hours=1)
    into: Kind = "semantic"
    sources_to: TierName = "l3"


def _builtin_l1() -> TierRules:
    return TierRules(capacity=1000, evict=["ttl", "lru"], idle=timedelta(hours=1))


def _builtin_l2() -> TierRules:
    return TierRules(capacity=None, evict=["lfu"], idle=timedelta(days=30))


class KindPolicy(Section):
    """The rules of one kind. Field defaults are the built-in defaults (`BUILTIN`)."""

    place: TierName = "l1"  # where new memories land
    ttl: PositiveDuration | None = None  # default time-to-live of new memories
    l1: TierRules = Field(default_factory=_builtin_l1)
    l2: TierRules = Field(default_factory=_builtin_l2)
    l3: L3Rules = Field(default_factory=L3Rules)
    promote: PromoteRules | None = Field(default_factory=PromoteRules)
    consolidate: ConsolidateRules | None = None
    dedupe: float | None = Field(None, gt=0.0, le=1.0)  # merge new memories this similar
    pin: TierName | None = None  # the current version never goes colder than this

    @model_validator(mode="after")
    def _place_not_colder_than_pin(self) -> KindPolicy:
        check_pin(self)
        return self


def check_pin(section: KindPolicy, where: str = "") -> None:
    """ValueError if `section` places new memories colder than its pin (`where`: key prefix)."""
    if section.pin is not None and TIERS.index(section.place) > TIERS.index(section.pin):
        raise ValueError(
            f"{where}place: expected a tier no colder than pin ({section.pin}), got {section.place}"
        )


#: The built-in defaults a kind falls back to when neither its own section nor
#: `defaults:` set a key: place l1; l1 capacity 1000, evict [ttl, lru], idle 1h;
#: l2 capacity none, evict [lfu], idle 30d; l3 retain none (keep); promote 3
#: hits within 1h; no consolidation, dedupe or pin. Same for every kind.
BUILTIN: dict[Kind, KindPolicy] = {kind: KindPolicy() for kind in KINDS}
