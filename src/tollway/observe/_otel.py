"""The OpenTelemetry tracer (imported only when tracing is on; the ``otel`` extra).

One `TracerProvider` per process, never set as OpenTelemetry's global provider. A pure ASGI
middleware opens the request span (continuing the client's W3C ``traceparent``) and ends it
when the response has been sent — for a stream, after its last chunk — so every stage below
is its child through OpenTelemetry's context (a contextvar: tasks spawned meanwhile inherit
it).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tollway import __version__
from tollway.observe.tracing import AttributeValue, Span, Tracer, TracingUnavailable

UNTRACED_PATHS = frozenset({"/health", "/metrics"})
_PROPAGATED = frozenset({b"traceparent", b"tracestate"})


class _Live(Span):
    """An OpenTelemetry span already open (the request's, seen from inside)."""

    __slots__ = ("_failed", "_span")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._failed = False

    def set(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def fail(self, kind: str) -> None:
        self._failed = True
        self._span.set_attribute("error.type", kind)
        self._span.set_status(Status(StatusCode.ERROR))


class _Scoped(_Live):
    """A child span, started and made current on entry, ended on exit."""

    __slots__ = ("_attributes", "_name", "_token", "_tracer")

    def __init__(self, tracer: trace.Tracer, name: str, attributes: dict[str, AttributeValue]):
        super().__init__(trace.INVALID_SPAN)
        self._tracer = tracer
        self._name = name
        self._attributes = attributes

    def __enter__(self) -> Span:
        self._span = self._tracer.start_span(self._name, attributes=self._attributes)
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and not self._failed:
            self.fail(exc_type.__name__)
        self._span.end()
        otel_context.detach(self._token)


class OtelTracer(Tracer):
    enabled = True

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("tollway", __version__)
        self._propagator = TraceContextTextMapPropagator()

    def span(self, name: str, **attributes: AttributeValue) -> Span:
        return _Scoped(self._tracer, name, {f"tollway.{k}": v for k, v in attributes.items()})

    def current(self) -> Span:
        return _Live(trace.get_current_span())

    def wrap(self, app: ASGIApp) -> ASGIApp:
        return RequestSpans(app, tracer=self)

    def shutdown(self) -> None:
        self.provider.shutdown()

    def start_request(self, scope: Scope) -> trace.Span:
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _PROPAGATED
        }
        method = scope["method"]
        return self._tracer.start_span(
            method,
            context=self._propagator.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        )


class RequestSpans:
    """One server span per HTTP request (not for /health and /metrics)."""

    def __init__(self, app: ASGIApp, tracer: OtelTracer) -> None:
        self._app = app
        self._tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            await self._app(scope, receive, send)
            return
        span = self._tracer.start_request(scope)
        token = otel_context.attach(trace.set_span_in_context(span))
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_noting_status)
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR))
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route:
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute("http.route", route)
            if status:
                span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            otel_context.detach(token)


def tracer_from_environment(environ: Mapping[str, str]) -> OtelTracer:
    """Exporters from ``OTEL_TRACES_EXPORTER`` (``otlp`` by default, ``console``, ``none``;
    comma-separated); each exporter, the sampler (``OTEL_TRACES_SAMPLER``) and the batch
    processor read their own ``OTEL_*`` variables."""
    provider = TracerProvider(resource=_resource())
    for exporter in _exporters(environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return OtelTracer(provider)


def _resource() -> Resource:
    detected = Resource.create({"service.version": __version__})
    if str(detected.attributes.get("service.name", "")).startswith("unknown_service"):
        return detected.merge(Resource({"service.name": "tollway"}))
    return detected  # OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES named it


def _exporters(environ: Mapping[str, str]) -> Iterator[SpanExporter]:
    names = environ.get("OTEL_TRACES_EXPORTER", "") or "otlp"
    for name in (n.strip().lower() for n in names.split(",")):
        if name in ("", "none"):
            continue
        if name == "console":
            yield ConsoleSpanExporter()
        elif name == "otlp":
            yield _otlp_exporter(environ)
        else:
            raise TracingUnavailable(
                f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console or none)"
            )


def _otlp_exporter(environ: Mapping[str, str]) -> SpanExporter:
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    packages = {"http/protobuf": "http", "grpc": "grpc"}
    if protocol not in packages:
        raise TracingUnavailable(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported (http/protobuf or grpc)"
        )
    module_name = f"opentelemetry.exporter.otlp.proto.{packages[protocol]}.trace_exporter"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = f"opentelemetry-exporter-otlp-proto-{packages[protocol]}"
        raise TracingUnavailable(f"the OTLP {protocol} exporter needs {package}") from exc
    exporter: SpanExporter = module.OTLPSpanExporter()
    return exporter
