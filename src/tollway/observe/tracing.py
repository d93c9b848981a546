"""Tracing: OpenTelemetry spans for each request and its stages, off by default.

Off, `Tracer` hands out one shared no-op span: no OpenTelemetry import, nothing allocated, a
method call per stage. On, `tollway.observe._otel.OtelTracer` (imported only then) records
real spans and exports them as the standard ``OTEL_*`` variables say. The tracer provider is
this process's own, never OpenTelemetry's global one.

Attributes carry ids and counts only: never a key, a prompt or an upstream's error text.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from types import TracebackType
from typing import ClassVar, Final

from starlette.types import ASGIApp

AttributeValue = str | bool | int | float

log = logging.getLogger("tollway.tracing")


class TracingUnavailable(Exception):
    """Tracing was asked for but cannot run (OpenTelemetry missing, unknown exporter)."""


class Span:
    """A span as the gateway sees it; this base class is the no-op one."""

    __slots__ = ()

    def set(self, key: str, value: AttributeValue) -> None:
        """Set one attribute (full OpenTelemetry name, e.g. ``tollway.request_id``)."""

    def fail(self, kind: str) -> None:
        """Mark the span as failed; ``kind`` becomes ``error.type`` (low cardinality)."""

    def __enter__(self) -> Span:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


NOOP_SPAN: Final = Span()


class Tracer:
    """The no-op tracer (tracing off)."""

    enabled: ClassVar[bool] = False

    def span(self, name: str, **attributes: AttributeValue) -> Span:
        """A child of the current span, as a context manager; each keyword becomes an
        attribute ``tollway.<keyword>``. An exception leaving it marks it failed."""
        return NOOP_SPAN

    def current(self) -> Span:
        """The span around the caller now (the request's, between stages)."""
        return NOOP_SPAN

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """`app` inside what opens one span per HTTP request (`app` itself when off)."""
        return app

    def shutdown(self) -> None:
        """Export what is pending (blocking: call it off the event loop)."""


def tracing_wanted(setting: bool | None, environ: Mapping[str, str]) -> bool:
    """``TOLLWAY_TRACING`` decides when set; unset, tracing is on when the environment
    configures a trace exporter (``OTEL_TRACES_EXPORTER`` other than ``none``, or an OTLP
    endpoint) and ``OTEL_SDK_DISABLED`` is not ``true``."""
    if setting is not None:
        return setting
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def build_tracer(setting: bool | None, environ: Mapping[str, str] = os.environ) -> Tracer:
    """The process's tracer. Asked for explicitly (``TOLLWAY_TRACING=1``) but impossible:
    `TracingUnavailable`. Only implied by ``OTEL_*`` variables: a warning, and no tracing."""
    if not tracing_wanted(setting, environ):
        return Tracer()
    try:
        from tollway.observe._otel import tracer_from_environment
    except ImportError as exc:
        message = "tracing needs OpenTelemetry: pip install 'tollway[otel]'"
        if setting:
            raise TracingUnavailable(message) from exc
        log.warning("%s (OTEL_* variables are set); tracing stays off", message)
        return Tracer()
    return tracer_from_environment(environ)
