"""The move journal (tiermem/journal.py) on real files: what survives a crash.

A crash is simulated the way it looks on disk afterwards: the log as the
killed process left it, read by a new `Journal` (a new process). The kill
tests of whole moves are in test_crash.py and test_demote_speed.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiermem import journal as jr
from tiermem.journal import Journal


def keys(j: Journal) -> list[tuple[str, str, list[str]]]:
    return [(i.src, i.dst, i.ids) for i in j.pending()]


def test_an_intent_is_pending_until_done(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    a = j.begin("l1", "l2", ["a", "b"])
    b = j.begin("l2", "l3", ("c",))
    assert keys(Journal(tmp_path)) == [("l1", "l2", ["a", "b"]), ("l2", "l3", ["c"])]
    a.done()
    assert keys(Journal(tmp_path)) == [("l2", "l3", ["c"])]
    b.done()
    assert Journal(tmp_path).pending() == [] and Journal(tmp_path).problems() == []


def test_a_torn_last_line_is_skipped_and_the_next_intent_starts_a_line(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.begin("l1", "l2", ["a"])
    with open(j.path, "a") as fh:
        fh.write('{"n": "x", "src": "l1", "dst": "l2", "ids": ["b"')  # killed mid-append
    after = Journal(tmp_path)  # the next process
    assert keys(after) == [("l1", "l2", ["a"])] and after.problems() == []
    after.begin("l2", "l3", ["c"])
    assert keys(Journal(tmp_path)) == [("l1", "l2", ["a"]), ("l2", "l3", ["c"])]
    assert Journal(tmp_path).problems() == []  # the torn line was cut before the append
    assert all(json.loads(line) for line in after.path.read_text().splitlines())


def test_a_lost_done_line_only_makes_recovery_look_again(tmp_path: Path) -> None:
    """`done` is not synced: a crash may lose it, leaving a finished move pending."""
    j = Journal(tmp_path)
    j.begin("l1", "l2", ["a"]).done()
    lines = j.path.read_text().splitlines()
    j.path.write_text(lines[0] + "\n")  # the done line never reached the disk
    assert keys(Journal(tmp_path)) == [("l1", "l2", ["a"])]


def test_compact_empties_the_log_only_when_nothing_is_in_flight(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    a = j.begin("l1", "l2", ["a"])
    j.compact()
    assert keys(Journal(tmp_path)) == [("l1", "l2", ["a"])]  # still in flight: kept
    a.done()
    j.compact()
    assert j.path.read_text() == ""


def test_the_log_is_emptied_once_large_and_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jr, "_COMPACT_AT", 200)
    j = Journal(tmp_path)
    for n in range(10):
        j.begin("l1", "l2", [f"id-{n}"]).done()
        assert j.path.stat().st_size <= 200 + 200  # one intent and its done past the limit
    held = j.begin("l1", "l2", ["held"])
    for n in range(10):
        j.begin("l1", "l2", [f"more-{n}"]).done()
    assert keys(Journal(tmp_path)) == [("l1", "l2", ["held"])]  # never dropped in flight
    held.done()
    assert j.path.read_text() == "" and Journal(tmp_path).pending() == []


def test_legacy_intent_files_are_read_and_removed_when_done(tmp_path: Path) -> None:
    legacy = tmp_path / "deadbeef.json"
    legacy.write_text(json.dumps({"src": "l2", "dst": "l3", "ids": ["z"]}))
    (tmp_path / "torn.tmp").write_text("{")  # an old-format write never acted on
    j = Journal(tmp_path)
    assert not (tmp_path / "torn.tmp").exists()
    (intent,) = j.pending()
    assert (intent.src, intent.dst, intent.ids) == ("l2", "l3", ["z"])
    intent.done()
    assert not legacy.exists() and j.pending() == []


def test_unreadable_lines_and_files_are_problems_not_intents(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.begin("l1", "l2", ["a"])
    with open(j.path, "a") as fh:
        fh.write("not json\n")
    j2 = Journal(tmp_path)
    j2.begin("l1", "l2", ["b"])
    (tmp_path / "bad.json").write_text("{")
    after = Journal(tmp_path)
    assert keys(after) == [("l1", "l2", ["a"]), ("l1", "l2", ["b"])]
    where = sorted(p.where for p in after.problems())
    assert where == [str(tmp_path / "bad.json"), f"{after.path} line 2"]


def test_readers_create_nothing_and_the_first_intent_creates_the_log_durably(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(jr, "fsync_dir", synced.append)
    j = Journal(tmp_path / "moves")
    assert j.pending() == [] and not j.path.exists()  # a read-only process only reads
    j.compact()  # recovery of a fresh store
    assert not j.path.exists() and synced == []
    j.begin("l1", "l2", ["a"])  # the log's directory entry is synced before it is relied on
    assert synced == [tmp_path / "moves", tmp_path]
    j.begin("l1", "l2", ["b"])
    assert len(synced) == 2  # once
    assert keys(Journal(tmp_path / "moves")) == [("l1", "l2", ["a"]), ("l1", "l2", ["b"])]
