"""Summarizers: turning a cluster's texts into one text, with no model needed.

`Summarizer` is the protocol (`summarize(texts) -> str`). The default,
`ExtractiveSummarizer`, picks the most central text and adds the most
distinct others up to a bounded length. `CallableSummarizer` adapts any
callable (an LLM client) with a per-run budget on calls and falls back to
the extractive one beyond it or on failure.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np

log = logging.getLogger("tiermem.consolidate")
_WORD = re.compile(r"\w+", re.UNICODE)


@runtime_checkable
class Summarizer(Protocol):
    """Turns the texts of a cluster (oldest first) into one text."""

    def summarize(self, texts: list[str]) -> str: ...


class ExtractiveSummarizer:
    """The most central text (medoid by word overlap), then the most distinct others,
    joined with "; " up to `max_chars`. Needs no model.

    >>> ExtractiveSummarizer().summarize(["tea at noon", "green tea at noon", "tea at noon"])
    'tea at noon; green tea at noon'
    """

    def __init__(self, max_chars: int = 400, max_texts: int = 200, redundant: float = 0.8) -> None:
        self.max_chars = max_chars
        self.max_texts = max_texts  # larger clusters are sampled evenly (cost O(max_texts²))
        self.redundant = redundant  # a text this similar (Jaccard) to a chosen one is skipped

    def summarize(self, texts: list[str]) -> str:
        distinct: dict[str, str] = {}
        for t in texts:
            distinct.setdefault(" ".join(t.lower().split()), " ".join(t.split()))
        cands = list(distinct.values())
        if len(cands) > self.max_texts:
            step = len(cands) / self.max_texts
            cands = [cands[int(i * step)] for i in range(self.max_texts)]
        if not cands:
            return ""
        sim = _jaccards([_WORD.findall(c.lower()) for c in cands])
        chosen = [int(np.argmax(sim.sum(axis=1)))]
        out = cut_text(cands[chosen[0]], self.max_chars)
        while len(chosen) < len(cands):
            closest = sim[:, chosen].max(axis=1)
            closest[chosen] = np.inf
            best = int(np.argmin(closest))
            if closest[best] >= self.redundant or len(out) + 2 + len(cands[best]) > self.max_chars:
                break
            chosen.append(best)
            out += "; " + cands[best]
        return out


def _jaccards(words: list[list[str]]) -> np.ndarray:
    """Jaccard similarity of every pair of word sets, as one matrix product over
    word incidence (a Python loop over the pairs was a tenth of consolidation)."""
    vocab: dict[str, int] = {}
    rows = [[vocab.setdefault(w, len(vocab)) for w in ws] for ws in words]
    hits = np.zeros((len(words), max(len(vocab), 1)))
    for i, cols in enumerate(rows):
        hits[i, cols] = 1.0
    both = hits @ hits.T  # exact: small integer counts in float64
    sizes = np.diag(both)
    either = sizes[:, None] + sizes[None, :] - both
    return np.divide(both, either, out=np.ones_like(both), where=either > 0)


def cut_text(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


class CallableSummarizer:
    """Any callable ``fn(texts) -> str`` (an LLM client) as a Summarizer, with at most
    `budget` calls per consolidation run; beyond it, or when `fn` fails or returns
    nothing, the `fallback` (extractive) summarises instead."""

    def __init__(
        self,
        fn: Callable[[list[str]], str],
        budget: int | None = None,
        fallback: Summarizer | None = None,
    ) -> None:
        self.fn = fn
        self.budget = budget
        self.fallback = fallback or ExtractiveSummarizer()
        self.calls = 0  # calls made in the current run
        self.failures = 0

    def start_run(self) -> None:
        """Reset the per-run budget (the consolidate job calls this)."""
        self.calls = 0

    def summarize(self, texts: list[str]) -> str:
        if self.budget is not None and self.calls >= self.budget:
            return self.fallback.summarize(texts)
        self.calls += 1
        try:
            out = self.fn(texts)
        except Exception as exc:  # a remote model can fail in any way: fall back, don't stop
            self.failures += 1
            log.warning("summarizer failed (%s); using the extractive fallback", exc)
            return self.fallback.summarize(texts)
        if not isinstance(out, str) or not out.strip():
            return self.fallback.summarize(texts)
        return out.strip()


def span_note(n: int, first: datetime, last: datetime) -> str:
    """ "(from 5 episodes, 2024-03-01 – 2024-03-09)" (one date when both agree)."""
    a, b = first.date().isoformat(), last.date().isoformat()
    return f"(from {n} episodes, {a})" if a == b else f"(from {n} episodes, {a} – {b})"
