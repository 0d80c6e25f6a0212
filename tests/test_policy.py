"""Policy files (POLICY.md v1): shipped policies load, durations parse, and every
error is a PolicyError naming the file, the key path and what was expected."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tiermem.errors import PolicyError
from tiermem.lifecycle.policy import (
    BUILTIN,
    KindPolicy,
    Policy,
    TierRules,
    format_duration,
    load_policy,
    parse_duration,
)
from tiermem.model import KINDS
from tiermem.resources import shipped_policies

# --- shipped policies --------------------------------------------------------


def test_the_named_policies_are_shipped() -> None:
    assert {"default", "chat-assistant", "coding-agent"} <= set(shipped_policies())


@pytest.mark.parametrize("name", sorted(shipped_policies()))
def test_every_shipped_policy_loads(name: str) -> None:
    by_name = load_policy(name)
    assert by_name.name == name
    assert by_name.source == shipped_policies()[name]
    assert load_policy(shipped_policies()[name]) == by_name  # by path too
    for kind in KINDS:
        assert isinstance(by_name.for_kind(kind), KindPolicy)
    assert all(kind in by_name.describe() for kind in KINDS)


@pytest.mark.parametrize("name", sorted(shipped_policies()))
def test_every_key_of_a_shipped_policy_is_commented(name: str) -> None:
    for n, line in enumerate(shipped_policies()[name].read_text().splitlines(), 1):
        # a key with a value on its line (not a bare section header) has a comment
        if re.match(r"^\s*\w+:\s*[^\s#]", line):
            assert "#" in line, f"{name}:{n}: {line!r} has no comment"


def test_shipped_policies_say_what_the_brief_asks() -> None:
    chat = load_policy("chat-assistant")
    ep = chat.for_kind("episodic")
    assert ep.l1.capacity == 200 and ep.l1.idle == timedelta(minutes=20)
    assert ep.consolidate is not None and ep.consolidate.every == timedelta(hours=1)
    assert ep.l3.retain == timedelta(days=365)
    assert chat.for_kind("semantic").dedupe == 0.92
    coding = load_policy("coding-agent")
    proc = coding.for_kind("procedural")
    assert proc.pin == "l1" and proc.place == "l1"
    assert coding.for_kind("episodic").l3.retain is None
    assert coding.for_kind("episodic").l1.idle == timedelta(days=7)
    assert coding.for_kind("semantic").dedupe == 0.95


# --- durations ---------------------------------------------------------------

GOOD_DURATIONS: list[tuple[Any, timedelta]] = [
    ("90s", timedelta(seconds=90)),
    ("15m", timedelta(minutes=15)),
    ("1h", timedelta(hours=1)),
    ("30d", timedelta(days=30)),
    ("2w", timedelta(weeks=2)),
    ("1.5h", timedelta(minutes=90)),
    (" 10 m ", timedelta(minutes=10)),
    ("45", timedelta(seconds=45)),
    ("0s", timedelta(0)),
    (0, timedelta(0)),
    (3600, timedelta(hours=1)),
    (0.5, timedelta(milliseconds=500)),
    (timedelta(days=1), timedelta(days=1)),
]

BAD_DURATIONS: list[Any] = [
    "abc",
    "",
    "1y",
    "h",
    "-5s",
    "1h30m",
    "1 hour",
    -1,
    -0.5,
    float("nan"),
    float("inf"),
    True,
    None,
    [1],
    {"h": 1},
    timedelta(seconds=-1),
]


@pytest.mark.parametrize(("value", "expected"), GOOD_DURATIONS)
def test_parse_duration_good(value: Any, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_parse_duration_bad_says_what_was_expected(value: Any) -> None:
    with pytest.raises(ValueError, match=r'expected a duration like "90s", "15m", "1h", "30d"'):
        parse_duration(value)


def test_parse_duration_error_shows_the_bad_value() -> None:
    with pytest.raises(ValueError, match=r'got "abc"$'):
        parse_duration("abc")


@pytest.mark.parametrize("text", ["90s", "15m", "1h", "30d", "2w"])
def test_format_duration_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


# --- errors name the file, the key path and what was expected ----------------


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path | str) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return str(info.value)


BAD_POLICIES = [
    (
        "bad duration",
        "version: 1\nkinds:\n  episodic:\n    l1: {idle: soon}\n",
        "kinds.episodic.l1.idle",
        'expected a duration like "90s", "15m", "1h", "30d", "2w" or seconds, got "soon"',
    ),
    (
        "unknown key",
        "version: 1\nkinds:\n  episodic:\n    l1: {capcity: 5}\n",
        "kinds.episodic.l1.capcity",
        "unknown key; expected one of capacity,",
    ),
    (
        "unknown top-level key",
        "version: 1\npolicy: {}\n",
        "policy",
        "unknown key",
    ),
    (
        "unknown kind",
        "version: 1\nkinds:\n  episodc: {}\n",
        "kinds.episodc",
        "expected 'episodic', 'semantic' or 'procedural'",
    ),
    (
        "unknown selector",
        "version: 1\nkinds:\n  semantic:\n    l2: {evict: [lfu, oldest]}\n",
        "kinds.semantic.l2.evict.1",
        'or a dotted path "package.module:function", got "oldest"',
    ),
    (
        "unimportable dotted selector",
        "version: 1\nkinds:\n  episodic:\n    l1: {evict: ['no_such_module_xyz.sel:pick']}\n",
        "kinds.episodic.l1.evict.0",
        'cannot import selector "no_such_module_xyz.sel:pick": '
        "No module named 'no_such_module_xyz'",
    ),
    (
        "missing function of a dotted selector",
        "version: 1\nkinds:\n  episodic:\n    l1: {evict: ['os.path:no_such_fn']}\n",
        "kinds.episodic.l1.evict.0",
        "cannot import selector",
    ),
    (
        "dotted selector that is not callable",
        "version: 1\nkinds:\n  episodic:\n    l1: {evict: ['os:sep']}\n",
        "kinds.episodic.l1.evict.0",
        "is not callable",
    ),
    (
        "on_read not a count",
        'version: 1\nkinds:\n  episodic:\n    promote: {on_read: "yes"}\n',
        "kinds.episodic.promote.on_read",
        'expected a valid integer, got "yes"',
    ),
    (
        "on_read zero",
        "version: 1\nkinds:\n  episodic:\n    promote: {on_read: 0}\n",
        "kinds.episodic.promote.on_read",
        "expected greater than or equal to 1, got 0",
    ),
    (
        "negative capacity",
        "version: 1\nkinds:\n  episodic:\n    l2: {capacity: -1}\n",
        "kinds.episodic.l2.capacity",
        "expected greater than or equal to 0, got -1",
    ),
    (
        "capacity not a number",
        "version: 1\nkinds:\n  episodic:\n    l1: {capacity: lots}\n",
        "kinds.episodic.l1.capacity",
        'got "lots"',
    ),
    ("wrong version", "version: 2\nkinds: {}\n", "version", "expected 1, got 2"),
    ("missing version", "kinds: {}\n", "version", "missing required key"),
    (
        "place colder than pin",
        "version: 1\nkinds:\n  procedural: {place: l3, pin: l2}\n",
        "kinds.procedural.place",
        "expected a tier no colder than pin (l2), got l3",
    ),
    (
        "place colder than a pin from defaults",
        "version: 1\ndefaults: {pin: l1}\nkinds:\n  semantic: {place: l2}\n",
        "kinds.semantic.place",
        "expected a tier no colder than pin (l1), got l2",
    ),
    (
        "bad on_full",
        "version: 1\nkinds:\n  episodic:\n    l1: {on_full: drop}\n",
        "kinds.episodic.l1.on_full",
        "expected 'evict', 'warn' or 'reject', got \"drop\"",
    ),
    (
        "similarity out of range",
        "version: 1\nkinds:\n  episodic:\n    consolidate: {similarity: 1.5}\n",
        "kinds.episodic.consolidate.similarity",
        "expected less than or equal to 1, got 1.5",
    ),
    (
        "dedupe of zero",
        "version: 1\nkinds:\n  semantic: {dedupe: 0}\n",
        "kinds.semantic.dedupe",
        "expected greater than 0",
    ),
    (
        "zero promote window",
        "version: 1\nkinds:\n  episodic:\n    promote: {window: 0s}\n",
        "kinds.episodic.promote.window",
        "expected a positive duration, got 0s",
    ),
    (
        "bad key in defaults",
        "version: 1\ndefaults:\n  l3: {retain: forever}\n",
        "defaults.l3.retain",
        'got "forever"',
    ),
    (
        "source is not a file key",
        "version: 1\nsource: x.yaml\n",
        "source",
        "unknown key",
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [case[1:] for case in BAD_POLICIES],
    ids=[case[0] for case in BAD_POLICIES],
)
def test_error_names_file_key_path_and_expectation(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}: {key}: "), message
    assert expected in message, message


def test_every_problem_is_reported_one_per_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\nkinds:\n  episodic:\n    l1: {idle: soon, capacity: -1}\n    bogus: 1\n",
    )
    lines = error_of(path).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{path}: kinds.episodic.") for line in lines)


def test_bad_yaml_syntax_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nkinds:\n  episodic:\n   place: l1\n  - oops\n")
    message = error_of(path)
    assert message.startswith(f"{path}: line 5, column 3: invalid YAML"), message


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nkinds:\n  episodic: {}\n  episodic: {place: l2}\n")
    assert error_of(path).startswith(f"{path}: line 4, column 3: invalid YAML: duplicate key")


def test_bad_toml_and_json_name_file_and_line(tmp_path: Path) -> None:
    toml = write(tmp_path, "version = 1\n[kinds.episodic\n", "p.toml")
    assert re.match(rf"{re.escape(str(toml))}: invalid TOML: .*line 2", error_of(toml))
    js = write(tmp_path, '{"version": 1,}', "p.json")
    assert error_of(js).startswith(f"{js}: line 1, column 15: invalid JSON")


@pytest.mark.parametrize("text", ["", "[1, 2]\n", "just a string\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert error_of(path).startswith(f"{path}: expected a mapping of keys")


def test_unknown_file_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "version = 1\n", "p.ini")
    message = error_of(path)
    assert message.startswith(f"{path}: unknown policy format '.ini'; expected .yaml")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert error_of(path) == f"{path}: policy file not found"


def test_unknown_policy_name_lists_the_shipped_ones() -> None:
    message = error_of("no-such-policy")
    assert "no shipped policy 'no-such-policy'" in message
    assert "default" in message


# --- fallback order and merging ------------------------------------------------


def test_builtins_when_nothing_is_written() -> None:
    policy = Policy.model_validate({"version": 1})
    for kind in KINDS:
        got = policy.for_kind(kind)
        assert got == BUILTIN[kind]
        assert got.place == "l1" and got.consolidate is None
        assert got.l1 == TierRules(capacity=1000, evict=["ttl", "lru"], idle=timedelta(hours=1))
        assert got.l2 == TierRules(capacity=None, evict=["lfu"], idle=timedelta(days=30))
        assert got.l3.retain is None
        assert got.promote is not None and got.promote.hits == 3
        assert got.promote.window == timedelta(hours=1)


def test_kind_over_defaults_over_builtins(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
version: 1
defaults:
  ttl: 30d
  l1: {capacity: 50, idle: 10m}
  consolidate: {every: 2h}
kinds:
  semantic:
    l1: {capacity: 500}
    consolidate: null
  procedural:
    pin: l2
    l2: {evict: [fifo]}
""",
    )
    policy = load_policy(path)
    sem = policy.for_kind("semantic")
    assert sem.l1.capacity == 500  # the kind's own key
    assert sem.l1.idle == timedelta(minutes=10)  # from defaults:
    assert sem.l1.evict == ["ttl", "lru"]  # from the built-ins
    assert sem.ttl == timedelta(days=30)  # from defaults:
    assert sem.consolidate is None  # an explicit null wins
    ep = policy.for_kind("episodic")  # left out: defaults, then built-ins
    assert ep.l1 == TierRules(capacity=50, evict=["ttl", "lru"], idle=timedelta(minutes=10))
    assert ep.consolidate is not None
    assert ep.consolidate.every == timedelta(hours=2)  # from defaults:
    assert ep.consolidate.similarity == 0.85  # the model's default for an unset key
    proc = policy.for_kind("procedural")
    assert proc.pin == "l2"
    assert proc.l2.evict == ["fifo"] and proc.l2.idle == timedelta(days=30)
    assert proc.l1.capacity == 50


def test_without_defaults_a_kind_merges_over_builtins() -> None:
    policy = Policy.model_validate(
        {"version": 1, "kinds": {"episodic": {"l2": {"idle": "7d"}, "promote": {"hits": 5}}}}
    )
    ep = policy.for_kind("episodic")
    assert ep.l2 == TierRules(capacity=None, evict=["lfu"], idle=timedelta(days=7))
    assert ep.promote is not None and ep.promote.window == timedelta(hours=1)
    assert ep.promote.hits == 5
    assert policy.for_kind("semantic") == BUILTIN["semantic"]


def test_default_policy_semantic_keeps_builtin_l2_evict() -> None:
    sem = load_policy("default").for_kind("semantic")
    assert sem.l1 == TierRules(capacity=500, evict=["lfu"], idle=timedelta(days=1))
    assert sem.l2.idle == timedelta(days=180) and sem.l2.evict == ["lfu"]


def test_models_are_frozen() -> None:
    policy = load_policy("default")
    with pytest.raises(ValueError):
        policy.for_kind("episodic").l1.capacity = 3  # type: ignore[misc]


# --- other formats -------------------------------------------------------------

SMALL_YAML = """
version: 1
kinds:
  episodic:
    ttl: 90d
    l1: {capacity: 200, evict: [ttl, lru], idle: 20m, on_full: warn}
    l3: {retain: 365d}
    consolidate: {every: 1h, similarity: 0.8, min_age: 30m}
  semantic:
    dedupe: 0.92
  procedural:
    pin: l2
"""

SMALL_DATA: dict[str, Any] = {
    "version": 1,
    "kinds": {
        "episodic": {
            "ttl": "90d",
            "l1": {"capacity": 200, "evict": ["ttl", "lru"], "idle": 1200, "on_full": "warn"},
            "l3": {"retain": "365d"},
            "consolidate": {"every": 3600, "similarity": 0.8, "min_age": "30m"},
        },
        "semantic": {"dedupe": 0.92},
        "procedural": {"pin": "l2"},
    },
}

SMALL_TOML = """
version = 1

[kinds.episodic]
ttl = "90d"
l1 = { capacity = 200, evict = ["ttl", "lru"], idle = "20m", on_full = "warn" }
l3 = { retain = "365d" }
consolidate = { every = "1h", similarity = 0.8, min_age = "30m" }

[kinds.semantic]
dedupe = 0.92

[kinds.procedural]
pin = "l2"
"""


def test_toml_and_json_load_like_yaml(tmp_path: Path) -> None:
    policies = [
        load_policy(write(tmp_path, SMALL_YAML, "small.yaml")),
        load_policy(write(tmp_path, SMALL_TOML, "small.toml")),
        load_policy(write(tmp_path, json.dumps(SMALL_DATA), "small.json")),
        load_policy(write(tmp_path, SMALL_YAML, "small.yml")),
    ]
    first = policies[0]
    assert first.for_kind("episodic").l1.on_full == "warn"
    for other in policies[1:]:
        assert other.model_dump() == first.model_dump()
        assert other.kinds == first.kinds
        for kind in KINDS:
            assert other.for_kind(kind) == first.for_kind(kind)


# --- custom selectors by dotted path ------------------------------------------


def test_custom_selector_by_dotted_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "my_selectors_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "sel.py").write_text(
        "def oldest_first(items, now, n):\n"
        "    return sorted(items, key=lambda s: s.created_at)[:n]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(
        tmp_path,
        "version: 1\nkinds:\n  episodic:\n"
        "    l1: {evict: [ttl, 'my_selectors_pkg.sel:oldest_first']}\n",
    )
    policy = load_policy(path)
    assert policy.for_kind("episodic").l1.evict == ["ttl", "my_selectors_pkg.sel:oldest_first"]
