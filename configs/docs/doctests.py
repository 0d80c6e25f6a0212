"""A Griffe extension for the docs build: show docstrings' doctests as code.

tiermem's docstrings hold bare doctest blocks (``>>> ...`` run by
``pytest --doctest-modules``), which Markdown would read as nested quotes.
This fences each block (from a ``>>>`` line to the next blank line) as
``pycon`` before mkdocstrings renders it; the source stays as it is.
"""

from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    """``text`` with every bare doctest block wrapped in a ```` ```pycon ```` fence."""
    out: list[str] = []
    in_fence = in_example = False
    for line in text.split("\n"):
        if in_example and not line.strip():
            out.append("```")
            in_example = False
        elif line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and not in_example and line.startswith(">>>"):
            out.append("```pycon")
            in_example = True
        out.append(line)
    if in_example:
        out.append("```")
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Fence the doctests of every object's docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
