"""Tracing: OpenTelemetry spans when the SDK is installed (extra ``otel``), else no-ops.

>>> with span("tiermem.example", job="demote") as sp:
...     sp.set_attribute("run", "abc123")

Spans are made with the tracer of the ``opentelemetry`` API, once an application
has configured a `TracerProvider` (before that, none are made: see `_configured`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Span(Protocol):
    def set_attribute(self, key: str, value: Any) -> Any: ...


class _NoSpan:
    """What `span` yields without OpenTelemetry."""

    def set_attribute(self, key: str, value: Any) -> None:
        return None


def _trace_api() -> Any:
    try:
        return importlib.import_module("opentelemetry.trace")
    except ImportError:
        return None


_TRACE = _trace_api()
_TRACER = None if _TRACE is None else _TRACE.get_tracer("tiermem")


def _configured() -> bool:
    """Whether an application has set a TracerProvider. Until then the API's proxy
    hands out non-recording spans that still cost ~6 µs each (a tenth of a search's
    Python time), so none are made."""
    return not isinstance(_TRACE.get_tracer_provider(), _TRACE.ProxyTracerProvider)


_NOSPAN = _NoSpan()


def enabled() -> bool:
    """True when spans go to OpenTelemetry."""
    return _TRACER is not None


def _clean(value: Any) -> Any:
    return value if isinstance(value, str | bool | int | float) else str(value)


@contextmanager
def span(name: str, **attrs: Any) -> Iterator[Span]:
    """A span named `name` with attributes `attrs` (None values dropped)."""
    if _TRACER is None or not _configured():
        yield _NOSPAN
        return
    clean = {k: _clean(v) for k, v in attrs.items() if v is not None}
    with _TRACER.start_as_current_span(name, attributes=clean) as sp:
        yield sp
