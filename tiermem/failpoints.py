"""Failpoints: kill the process at a named step, for crash tests.

Set ``TIERMEM_FAILPOINT`` to a step name (``move.copied``), optionally with
``:N`` to fire on its N-th hit (``move.copied:3``, mid-batch). When reached,
the process SIGKILLs itself: no cleanup, no flush, like a power cut for
everything not yet fsynced. Unset, a failpoint costs one dict lookup.

Steps: see `STEPS` (moves), `COMPACT_STEPS` (L3 compaction) and
`CONSOLIDATE_STEPS` (consolidation).
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
# L3 compaction (ColdTier.compact_namespace). Kept out of STEPS, which
# tests/test_crash.py parametrizes its move scenarios over.
COMPACT_STEPS = (
    "compact.written",  # new files durable, manifest not yet committed
    "compact.committed",  # manifest committed, old files not yet removed
)
# Consolidation (tiermem/consolidate.py), per cluster; also kept out of STEPS.
CONSOLIDATE_STEPS = (
    "consolidate.written",  # semantic memory durable, sources not yet marked
    "consolidate.marked",  # sources staying in place marked, the others not yet moved
    "consolidate.moved",  # sources moved to sources_to
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
