"""Reload a policy file when it changes: polled, validated, applied or refused.

`PolicyWatcher.poll` compares the file's signature, (mtime_ns, size,
sha256 of the content), with the last one it saw. A changed file is loaded;
if it validates the new policy is handed to ``apply``, otherwise the old
rules stay and the `PolicyError` is logged once per distinct bad content
(not on every poll while the file stays broken). The hash catches edits that
keep size and mtime (a coarse-mtime filesystem, a copy with ``cp -p``);
policy files are small, so reading one every few seconds is cheap.

Only policies given as a file path are watched: a shipped name ("default")
is a package resource that changes only with an upgrade, which needs a
restart anyway (`policy_file` returns None for those).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from tiermem.errors import PolicyError
from tiermem.lifecycle.policy import Policy, load_policy
from tiermem.resources import SUFFIXES

log = logging.getLogger("tiermem.policy")

Signature = tuple[int, int, str]


def policy_file(ref: str | Path) -> Path | None:
    """The file a policy reference names, or None for a shipped policy's name."""
    path = Path(ref).expanduser()
    return path.resolve() if path.suffix in SUFFIXES else None


def signature(path: Path) -> Signature | None:
    """(mtime_ns, size, sha256 hex) of ``path``, or None if it cannot be read."""
    try:
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, digest


class PolicyWatcher:
    """Watches one policy file; ``apply(policy)`` gets each new version that validates.

    `seen` is the signature of the file the policy in force was loaded from
    (taken just before loading it, so an edit made after the engine opened,
    before this watcher existed, is still noticed); without it, the file as
    it is at construction counts as seen. Thread-safe: `poll` (a scheduler
    task) and `reload` (SIGHUP) may race.
    """

    def __init__(
        self,
        path: Path,
        apply: Callable[[Policy], None],
        seen: Signature | Literal["now"] | None = "now",
    ) -> None:
        self.path = path
        self._apply = apply
        self._seen = signature(path) if seen == "now" else seen
        self._refused: str | None = None  # digest of the last content refused (or "missing")
        self._lock = threading.Lock()

    def poll(self) -> bool:
        """Check the file once; True if a changed, valid file was applied."""
        with self._lock:
            sig = signature(self.path)
            if sig == self._seen:
                return False
            self._seen = sig
            return self._load(sig, quiet=True)

    def reload(self) -> bool:
        """Load the file now, changed or not (SIGHUP); a refusal is always logged."""
        with self._lock:
            self._seen = sig = signature(self.path)
            return self._load(sig, quiet=False)

    def _load(self, sig: Signature | None, *, quiet: bool) -> bool:
        key = "missing" if sig is None else sig[2]
        try:
            if sig is None:
                raise PolicyError(f"{self.path}: policy file not readable")
            new = load_policy(self.path)
        except PolicyError as exc:
            if not quiet or key != self._refused:
                log.error("policy reload rejected, keeping the rules in force: %s", exc)
            self._refused = key
            return False
        # The file may have changed again while loading: then the next poll sees a
        # new signature and loads it again, so the newest content always wins.
        self._refused = None
        self._apply(new)
        return True
