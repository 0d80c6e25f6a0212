"""The events log: every lifecycle action, appended, with its reason.

One JSON object per line in ``<data dir>/events/events.jsonl``: ``at``,
``run`` (the job run's correlation id), ``job``, ``action`` (move, delete,
merge, expire), ``id``, ``namespace``, ``src``, ``dst``, ``reason``. Each
batch is appended and fsynced; a torn last line (a crash mid-append) is
skipped by readers. The SQL view ``events`` reads these files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tiermem.model import Action

FILE = "events.jsonl"
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_STR = json.encoder.encode_basestring_ascii  # what _ENCODE writes a str as (C)


def _line(head: str, fields: dict[str, Any]) -> str:
    """`head` (an encoded object without its closing brace) extended by `fields`:
    exactly `_ENCODE`'s line, built by string joins (the encoder's per-object setup
    was most of a line's cost). Values are str or None; anything else goes the
    encoder's way."""
    try:
        parts = [f",{_STR(k)}:{'null' if v is None else _STR(v)}" for k, v in fields.items()]
    except TypeError:  # not a str
        return head + "," + _ENCODE(fields)[1:] if fields else head + "}"
    return head + "".join(parts) + "}"


_ACTION_KEYS = ("id", "namespace", "action", "src", "dst", "reason")


def _lines(head: str, actions: Sequence[Action]) -> list[str]:
    """One line per action, each exactly `_line(head, action.__dict__)`.

    An Action's fields are all str or None, so its __dict__ is its JSON
    (model_dump costs ~4 µs an action, a tenth of a large demote). Anything but
    a plain Action's dict goes `_line`'s way.
    """
    out: list[str] = []
    rows: list[tuple[Any, ...]] = []
    for a in actions:
        d = a.__dict__
        if tuple(d) == _ACTION_KEYS:
            rows.append(tuple(d.values()))
        else:
            out += _row_lines(head, rows)
            out.append(_line(head, d))
            rows = []
    return out + _row_lines(head, rows)


def _row_lines(head: str, rows: Iterable[Sequence[Any]]) -> list[str]:
    """One line per row of an action's fields in `_ACTION_KEYS` order, each exactly
    `_line` of them. The actions of a batch share all but their ids (namespace,
    source, destination, a few reasons), so what follows the id is encoded once
    per distinct tail."""
    tails: dict[tuple[Any, ...], str] = {}
    out: list[str] = []
    for row in rows:
        id_, key = row[0], tuple(row[1:])
        if type(id_) is not str:
            out.append(_line(head, dict(zip(_ACTION_KEYS, row, strict=True))))
            continue
        tail = tails.get(key)
        if tail is None:
            tail = tails[key] = _line("", dict(zip(_ACTION_KEYS[1:], key, strict=True)))
        out.append(f'{head},"id":{_STR(id_)}{tail}')
    return out


class EventLog:
    """Append-only JSON lines of lifecycle actions."""

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self.root = root
        if not read_only:
            root.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        return self.root / FILE

    def append(self, run: str, job: str, at: datetime, actions: Sequence[Action]) -> None:
        """Durably append one batch of actions of a job run."""
        if not actions:
            return
        head = _ENCODE({"at": at.isoformat(), "run": run, "job": job})[:-1]
        rows = getattr(actions, "action_rows", None)  # planned actions, as columns
        lines = _row_lines(head, rows()) if rows is not None else _lines(head, actions)
        torn = self._torn()
        with open(self.path, "a", encoding="utf-8") as fh:
            # after a crash mid-append, start on a fresh line so this batch stays readable
            fh.write(("\n" if torn else "") + "\n".join(lines) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _torn(self) -> bool:
        """Whether the log ends without a newline (a crash mid-append)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                return fh.read(1) != b"\n"
        except OSError:  # missing or empty
            return False

    def read(self) -> Iterator[dict[str, Any]]:
        """Every complete event, oldest first."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    continue  # torn tail of a crashed append
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn line, closed by a later append
