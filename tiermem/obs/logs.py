"""Logging: stdlib `logging` everywhere, text in a terminal, one JSON object a line when asked.

Fields of a JSON line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
then every ``extra=`` field of the call (jobs log ``job`` and ``run``, the run's
correlation id, which is also in the events log and on the job's trace span), and
``exc`` when an exception is logged.

    >>> import io, json, logging
    >>> buf = io.StringIO()
    >>> handler = configure("INFO", json=True, stream=buf)
    >>> logging.getLogger("tiermem.jobs").info("job %s run %s", "demote", "ab12",
    ...                                        extra={"job": "demote", "run": "ab12"})
    >>> line = json.loads(buf.getvalue())
    >>> line["message"], line["job"], line["run"], line["level"], line["logger"]
    ('job demote run ab12', 'demote', 'ab12', 'INFO', 'tiermem.jobs')
    >>> reset()

Rule: never log memory text, metadata values or secrets (URLs with passwords)
at INFO or above; ids, namespaces, counts and job names are fine.
"""

from __future__ import annotations

import json as _json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Attributes every LogRecord has: anything else came in through `extra=`.
_STANDARD = set(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extras(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value…`` for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = extras(record)
        if not fields:
            return text
        head, sep, tail = text.partition("\n")  # keep a traceback below the fields
        return head + "".join(f" {k}={v}" for k, v in fields.items()) + sep + tail


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler `configure` installed, so a second call replaces it."""


def configure(
    level: str = "INFO",
    json: bool = False,
    modules: dict[str, str] | None = None,
    *,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send log records to `stream` (stderr) as text or JSON; set levels.

    `level` is the root level; `modules` maps logger names (e.g. ``tiermem.jobs``,
    ``apscheduler``) to their own levels. Calling again replaces the handler.
    """
    root = logging.getLogger()
    reset()
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root.addHandler(handler)
    root.setLevel(_level(level, "log.level"))
    for name, lvl in (modules or {}).items():
        logging.getLogger(name).setLevel(_level(lvl, f"log.modules.{name}"))
    return handler


def configure_from(cfg: Any, level: str | None = None) -> logging.Handler:
    """`configure` from a `Config`'s ``[log]`` section; `level` (e.g. a CLI flag) wins."""
    section = cfg.log
    return configure(level or section.level, section.format == "json", dict(section.modules))


def reset() -> None:
    """Remove the handler `configure` installed (if any)."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(h)


def _level(name: str, key: str) -> int:
    upper = name.upper()
    if upper not in LEVELS:
        from tiermem.errors import ConfigError

        raise ConfigError(f"config key {key!r}: {name!r} is not one of {', '.join(LEVELS)}")
    return int(getattr(logging, upper))
