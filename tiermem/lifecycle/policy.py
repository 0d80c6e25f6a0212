"""Policy files (format v1, POLICY.md): typed, frozen models and a loader.

A policy says, per kind, where new memories land and what moves when. Every
model is frozen and refuses unknown keys. `load_policy` turns every problem
into a `PolicyError` naming the file, the dotted key path and what was
expected.

Merge rule: `Policy.for_kind(kind)` is the kind's section laid over the
`defaults:` section, laid over the built-in defaults (`BUILTIN`), key by key:
for the nested sections (`l1`, `l2`, `l3`, `promote`, `consolidate`) only
the keys a file writes replace the ones below, so `semantic: {l1: {capacity:
500}}` keeps the default `evict` and `idle`. An explicit `null` replaces too
(`consolidate: null` turns consolidation off). `Policy.kinds` holds the
sections as written; read the effective rules through `for_kind`.

This module is the file: `Policy` (the merge), and reading and validating
files. The sections of a kind and their values (durations, selectors) are
in policy_rules.py; their names are importable from here too.

>>> p = Policy.model_validate({"version": 1, "kinds": {"semantic": {"l1": {"capacity": 500}}}})
>>> r = p.for_kind("semantic").l1
>>> r.capacity, r.evict, r.idle
(500, ['ttl', 'lru'], datetime.timedelta(seconds=3600))
>>> parse_duration("2w")
datetime.timedelta(days=14)
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from tiermem.errors import PolicyError
from tiermem.lifecycle.policy_rules import (
    BUILTIN,
    BUILTIN_SELECTORS,
    ConsolidateRules,
    Duration,
    KindPolicy,
    L3Rules,
    PositiveDuration,
    PromoteRules,
    Section,
    Selector,
    TierRules,
    check_pin,
    format_duration,
    load_selector,
    parse_duration,
    shown,
)
from tiermem.model import KINDS, Kind
from tiermem.resources import SUFFIXES, resolve_policy

__all__ = [
    "BUILTIN",
    "BUILTIN_SELECTORS",
    "ConsolidateRules",
    "Duration",
    "KindPolicy",
    "L3Rules",
    "Policy",
    "PositiveDuration",
    "PromoteRules",
    "Selector",
    "TierRules",
    "format_duration",
    "load_policy",
    "load_selector",
    "parse_duration",
    "validate_policy",
]

_M = TypeVar("_M", bound=BaseModel)


def _overlay(base: _M, top: _M) -> _M:
    """`base` with the keys `top` was given (recursively for nested sections)."""
    updates: dict[str, Any] = {}
    for name in top.model_fields_set:
        new, old = getattr(top, name), getattr(base, name)
        if isinstance(new, BaseModel) and type(new) is type(old):
            new = _overlay(old, new)
        updates[name] = new
    return base.model_copy(update=updates)


class Policy(Section):
    """A whole policy file. `for_kind` gives the effective rules of a kind."""

    version: Literal[1]
    name: str = "custom"  # the file's stem when loaded from a file
    description: str | None = None  # free text, shown by describe()
    kinds: dict[Kind, KindPolicy] = Field(default_factory=dict)  # sections as written
    defaults: KindPolicy | None = None  # what a kind's section is laid over
    source: Path | None = Field(None, exclude=True)  # the file it was loaded from
    _effective: dict[Kind, KindPolicy] = PrivateAttr(default_factory=dict)
    _on_read: bool = PrivateAttr(False)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if type(v) is not int:  # not True, 1.0 or "1"
            raise ValueError(f"expected 1, got {shown(v)}")
        return v

    @model_validator(mode="after")
    def _merge(self) -> Policy:
        effective: dict[Kind, KindPolicy] = {}
        for kind in KINDS:
            merged = BUILTIN[kind]
            if self.defaults is not None:
                merged = _overlay(merged, self.defaults)
            if kind in self.kinds:
                merged = _overlay(merged, self.kinds[kind])
            where = f"kinds.{kind}." if kind in self.kinds else "defaults."
            check_pin(merged, where)
            effective[kind] = merged
        self._effective = effective
        self._on_read = any(bool(r.promote and r.promote.on_read) for r in effective.values())
        return self

    @property
    def promotes_on_read(self) -> bool:
        """Whether any kind's ``promote`` rule sets ``on_read`` (reads then check it)."""
        return self._on_read

    def for_kind(self, kind: Kind | str) -> KindPolicy:
        """The effective rules of `kind`: its section over `defaults:` over `BUILTIN`."""
        # Straight from the private-attribute dict: `self._effective` goes through
        # pydantic's __getattr__ (~1 µs), and writes ask several times per memory.
        effective: dict[str, KindPolicy] = self.__pydantic_private__["_effective"]  # type: ignore[index]
        try:
            return effective[kind]
        except KeyError:
            raise PolicyError(f"unknown kind {kind!r}; expected one of {KINDS}") from None

    def describe(self) -> str:
        """A short human summary, one line per kind."""
        d = format_duration
        lines = [f"policy {self.name!r}" + (f": {self.description}" if self.description else "")]
        for kind in KINDS:
            k = self.for_kind(kind)
            parts = [f"place {k.place}", f"pin {k.pin}" if k.pin else "", f"ttl {d(k.ttl)}"]
            for tier, r in (("l1", k.l1), ("l2", k.l2)):
                cap = "unbounded" if r.capacity is None else f"<= {r.capacity}"
                parts.append(f"{tier} {cap} evict {','.join(r.evict)} idle {d(r.idle)}")
            parts.append(f"l3 retain {d(k.l3.retain)}")
            if p := k.promote:
                on_read = f", {p.on_read} on read" if p.on_read else ""
                parts.append(f"promote {p.hits} hits/{d(p.window)}{on_read}")
            if c := k.consolidate:
                parts.append(f"consolidate every {d(c.every)} at {c.similarity} -> {c.into}")
            parts.append(f"dedupe {k.dedupe}" if k.dedupe else "")
            lines.append(f"  {kind}: " + "; ".join(filter(None, parts)))
        return "\n".join(lines)


# --- loading ---------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a second `l1:` would hide the first)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _read(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc.strerror or exc}") from exc
    try:
        if path.suffix in (".yaml", ".yml"):
            return yaml.load(text, Loader=_StrictLoader)
        if path.suffix == ".toml":
            return tomllib.loads(text)
        return json.loads(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise PolicyError(f"{path}: {at}invalid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: invalid YAML: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: invalid TOML: {exc}") from exc
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}, column {exc.colno}"
        raise PolicyError(f"{path}: {at}: invalid JSON: {exc.msg}") from exc


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _model_of(arg)) is not None:
            return found
    return None


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed at `loc` (a pydantic location), for "unknown key" hints."""
    model: type[BaseModel] = Policy
    i = 0
    while i < len(loc):
        field = model.model_fields.get(str(loc[i]))
        if field is None:
            return []
        if get_origin(field.annotation) is dict:
            i += 1  # skip the key (a kind name)
        found = _model_of(field.annotation)
        if found is None:
            return []
        model, i = found, i + 1
    return [name for name in model.model_fields if name != "source"]


_SUBKEY_RE = re.compile(r"^([a-z_][\w.]*): ")


def _explain(err: Any) -> str:
    """One pydantic error as `key.path: expected ..., got ...`."""
    loc = tuple(err["loc"])
    kind, msg, value = err["type"], err["msg"].removeprefix("Value error, "), err.get("input")
    if loc and loc[-1] == "[key]":  # a bad key of `kinds`
        loc = loc[:-1]
    if kind == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        msg = "unknown key" + (f"; expected one of {', '.join(allowed)}" if allowed else "")
    elif kind == "missing":
        msg = "missing required key" + ("; expected version: 1" if loc == ("version",) else "")
    elif kind == "value_error":  # ours: says what it got; may start with a sub-key
        if m := _SUBKEY_RE.match(msg):
            loc, msg = (*loc, *m.group(1).split(".")), msg[m.end() :]
    else:
        msg = msg.replace("Input should be", "expected") + f", got {shown(value)}"
    path = ".".join(str(p) for p in loc)
    return f"{path}: {msg}" if path else msg


def validate_policy(data: Any, *, name: str = "custom", source: Path | None = None) -> Policy:
    """Validate already-parsed policy data; PolicyError naming `source` and the key path."""
    where = f"{source}: " if source else ""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise PolicyError(f"{where}expected a mapping of keys (version, kinds, ...), got {got}")
    if "source" in data:
        raise PolicyError(
            f"{where}source: unknown key; expected one of {', '.join(_fields_at(()))}"
        )
    try:
        return Policy.model_validate({"name": name, **data, "source": source})
    except PydanticValidationError as exc:
        raise PolicyError("\n".join(where + _explain(e) for e in exc.errors())) from None


def load_policy(name_or_path: str | Path) -> Policy:
    """Load a shipped policy by name or a .yaml/.yml/.toml/.json file; PolicyError on any
    problem, naming the file, the dotted key path and what was expected."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix not in SUFFIXES and candidate.is_file():
        raise PolicyError(
            f"{candidate}: unknown policy format {candidate.suffix or '(none)'!r}; "
            f"expected {', '.join(SUFFIXES)}"
        )
    path = resolve_policy(name_or_path)
    return validate_policy(_read(path), name=path.stem, source=path)
