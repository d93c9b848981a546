"""Tracing against real requests (one failing upstream, one serving), exported to the SDK's
in-memory exporter: span names, parent/child structure, attributes, and nothing secret."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.observe.test_metrics import world_url
from tests.support.processes import tollway
from tests.support.servers import serving
from tests.support.world import Member, World
from tollway.app import create_app
from tollway.observe._otel import OtelTracer
from tollway.observe.tracing import Tracer, TracingUnavailable, build_tracer, tracing_wanted
from tollway.settings import Settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
PROMPT = "zebra quokka marmalade"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced_root(world: World, registry_path: Path, exporter: InMemorySpanExporter) -> Iterator[str]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(
        Settings(database_url=world_url(world), providers=str(registry_path)),
        tracer=OtelTracer(provider),
    )
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


def _request_spans(exporter: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    """The spans of ``count`` finished requests (a request span ends after its response)."""
    deadline = time.monotonic() + 10
    while True:
        spans = list(exporter.get_finished_spans())
        if sum(s.kind == SpanKind.SERVER for s in spans) >= count:
            return spans
        assert time.monotonic() < deadline, [s.name for s in spans]
        time.sleep(0.02)


def _attributes(spans: list[ReadableSpan]) -> str:
    return repr([dict(s.attributes or {}) for s in spans])


async def _chat(root: str, member: Member, *, stream: bool) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{root}/v1/chat/completions",
            json={
                "model": "chat-flaky",
                "messages": [{"role": "user", "content": PROMPT}],
                "stream": stream,
            },
            headers={
                "Authorization": f"Bearer {member.inference_key}",
                "traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01",
            },
        )


async def test_a_request_with_a_fallback_is_one_trace(
    world: World, traced_root: str, exporter: InMemorySpanExporter
) -> None:
    member = await world.member("tia", "pt", credits_eur="10")
    response = await _chat(traced_root, member, stream=False)
    assert response.status_code == 200
    spans = _request_spans(exporter, 1)

    [root] = [s for s in spans if s.kind == SpanKind.SERVER]
    assert root.name == "POST /v1/chat/completions"
    assert root.context is not None and root.parent is not None
    assert format(root.context.trace_id, "032x") == TRACE_ID  # the client's traceparent
    assert format(root.parent.span_id, "016x") == CLIENT_SPAN
    attributes = dict(root.attributes or {})
    assert attributes["http.route"] == "/v1/chat/completions"
    assert attributes["http.response.status_code"] == 200
    assert str(attributes["tollway.request_id"])

    children = [s for s in spans if s is not root]
    assert [s.name for s in sorted(children, key=lambda s: s.start_time or 0)] == [
        "tollway.auth",
        "tollway.policy",
        "tollway.route",
        "tollway.meter.reserve",
        "tollway.upstream",
        "tollway.upstream",
        "tollway.meter.settle",
    ]
    for child in children:
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context is not None and child.context.trace_id == root.context.trace_id

    failed, served = sorted(
        (s for s in children if s.name == "tollway.upstream"),
        key=lambda s: str((s.attributes or {})["tollway.attempt"]),
    )
    assert dict(failed.attributes or {}) == {
        "tollway.provider": "eu-broken",
        "tollway.model": "chat-flaky",
        "tollway.upstream_model": "mock-chat",
        "tollway.attempt": 1,
        "http.response.status_code": 503,
        "error.type": "503",
        "tollway.outcome": "error",
    }
    assert failed.status.status_code == StatusCode.ERROR
    assert (served.attributes or {})["tollway.provider"] == "eu-quant"
    assert (served.attributes or {})["tollway.outcome"] == "success"
    assert served.status.status_code == StatusCode.UNSET

    by_name = {s.name: dict(s.attributes or {}) for s in children}
    assert by_name["tollway.auth"]["tollway.project_id"] == member.project_id
    assert by_name["tollway.policy"]["tollway.model"] == "chat-flaky"
    assert by_name["tollway.route"]["tollway.candidates"] == 3  # two, and chat-b's fallback
    reserve, settle = by_name["tollway.meter.reserve"], by_name["tollway.meter.settle"]
    assert reserve["tollway.request_id"] == attributes["tollway.request_id"]
    assert settle["tollway.status"] == "success"
    charged, reserved = settle["tollway.charged_credits"], reserve["tollway.reserved_credits"]
    assert isinstance(charged, int) and isinstance(reserved, int)
    assert 0 < charged <= reserved

    everything = _attributes(spans)
    assert member.inference_key not in everything
    assert member.inference_key[:12] not in everything
    assert "quokka" not in everything


async def test_a_stream_is_settled_inside_its_request_span(
    world: World, traced_root: str, exporter: InMemorySpanExporter
) -> None:
    member = await world.member("tsu", "ps", credits_eur="10")
    response = await _chat(traced_root, member, stream=True)
    assert response.status_code == 200
    assert response.text.endswith("data: [DONE]\n\n")
    spans = _request_spans(exporter, 1)
    [root] = [s for s in spans if s.kind == SpanKind.SERVER]
    [settle] = [s for s in spans if s.name == "tollway.meter.settle"]
    assert root.context is not None and settle.parent is not None
    assert settle.parent.span_id == root.context.span_id
    assert (root.end_time or 0) >= (settle.end_time or 0)  # open until the stream ended
    upstream = [s for s in spans if s.name == "tollway.upstream"]
    assert [(s.attributes or {})["tollway.outcome"] for s in upstream] == ["error", "success"]


async def test_a_refused_request_is_traced_with_its_status(
    world: World, traced_root: str, exporter: InMemorySpanExporter
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{traced_root}/v1/chat/completions",
            json={"model": "chat-b", "messages": []},
            headers={"Authorization": "Bearer tw-not-a-real-key-0123456789"},
        )
    assert response.status_code == 401
    spans = _request_spans(exporter, 1)
    [root] = [s for s in spans if s.kind == SpanKind.SERVER]
    assert (root.attributes or {})["http.response.status_code"] == 401
    assert root.status.status_code == StatusCode.UNSET  # a client error is not a server fault
    [auth] = [s for s in spans if s.name == "tollway.auth"]
    assert (auth.attributes or {})["error.type"] == "Unauthorized"
    assert "tw-not-a-real-key" not in _attributes(spans)


def test_tracing_is_decided_by_the_setting_then_the_otel_variables() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert not tracing_wanted(None, {})
    assert tracing_wanted(None, endpoint)
    assert tracing_wanted(None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1"})
    assert tracing_wanted(None, {"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing_wanted(None, {**endpoint, "OTEL_TRACES_EXPORTER": "none"})
    assert not tracing_wanted(None, {**endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not tracing_wanted(False, endpoint)
    assert tracing_wanted(True, {})


def test_build_tracer_picks_the_exporters() -> None:
    assert type(build_tracer(None, {})) is Tracer
    tracer = build_tracer(True, {"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(tracer, OtelTracer)
    assert tracer.provider.resource.attributes["service.name"] == "tollway"
    tracer.shutdown()
    named = build_tracer(True, {"OTEL_TRACES_EXPORTER": "none", "OTEL_SERVICE_NAME": "edge"})
    assert isinstance(named, OtelTracer)
    with pytest.raises(TracingUnavailable, match="unknown exporter 'zipkin'"):
        build_tracer(True, {"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(TracingUnavailable, match="http/json"):
        build_tracer(True, {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_serve_refuses_an_impossible_tracing_set_up(tmp_path: Path) -> None:
    result = tollway(
        "serve",
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        TOLLWAY_TRACING="1",
        OTEL_TRACES_EXPORTER="zipkin",
    )
    assert result.returncode == 2
    assert "OTEL_TRACES_EXPORTER: unknown exporter 'zipkin'" in result.stderr
    assert "Traceback" not in result.stderr


def test_tracing_off_imports_no_opentelemetry_of_ours(tmp_path: Path) -> None:
    """Off, the gateway never loads its OpenTelemetry module or the SDK."""
    code = (
        "import sys\n"
        "from tollway.app import create_app\n"
        "from tollway.settings import Settings\n"
        f"app = create_app(Settings(database_url='sqlite:///{tmp_path / 'x.db'}'))\n"
        "assert not [m for m in sys.modules if m.startswith(('tollway.observe._otel',"
        " 'opentelemetry.sdk'))], 'loaded'\n"
        "assert not any(m.cls.__name__ == 'RequestSpans' for m in app.user_middleware)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
