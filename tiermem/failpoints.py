"""Failpoints: kill the process at a named step, for crash tests.

Set ``TIERMEM_FAILPOINT`` to a step name (``move.copied``), optionally with
``:N`` to fire on its N-th hit (``move.copied:3``, mid-batch). When reached,
the process SIGKILLs itself: no cleanup, no flush, like a power cut for
everything not yet fsynced. Unset, a failpoint costs one dict lookup.

Steps: see `STEPS`.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

STEPS = (
    "move.journaled",  # journal written, nothing copied
    "move.copied",  # destination durable, source still present
    "move.deleted",  # source removed, journal still present
)
_hits: Counter[str] = Counter()


def failpoint(step: str) -> None:
    """SIGKILL this process if TIERMEM_FAILPOINT names `step` (and its hit count)."""
    spec = os.environ.get("TIERMEM_FAILPOINT")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != step:
        return
    _hits[step] += 1
    if _hits[step] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
