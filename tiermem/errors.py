"""The exception tree. Every error tiermem raises derives from `TierMemError`.

    TierMemError
    ├── ValidationError      bad input; nothing was written        (also a ValueError)
    ├── NotFound             no memory with that id                (also a KeyError)
    ├── LockedError          another writer holds the data dir
    ├── QueryError           SQL refused or failed
    ├── ConfigError          bad config, or config does not match the data dir
    ├── PolicyError          bad policy file
    ├── CapacityError        a tier is full and its policy says reject
    └── TierUnavailable      a backend (Redis, files) cannot be reached

Backend errors (redis, usearch, duckdb, pyarrow) are translated at the tier
boundary with ``raise ... from exc`` so users only ever catch these.
"""

from __future__ import annotations


class TierMemError(Exception):
    """Root of every tiermem error."""


class ValidationError(TierMemError, ValueError):
    """Bad input. `field` names the offending field; nothing was written.

    >>> str(ValidationError("must not be empty", field="text"))
    'text: must not be empty'
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class NotFound(TierMemError, KeyError):
    """No memory with that id (in any tier)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"


class LockedError(TierMemError):
    """Another process holds the writer lock of the data dir."""


class QueryError(TierMemError):
    """A SQL query was refused (not a single read-only SELECT) or failed."""


class ConfigError(TierMemError):
    """The configuration is invalid or does not match the data dir."""


class PolicyError(TierMemError):
    """A policy file is invalid; the message names the file and key path."""


class CapacityError(TierMemError):
    """A tier is full and its policy says `on_full: reject`."""


class TierUnavailable(TierMemError):
    """A backend cannot be reached; the message says which and how to fix it."""
