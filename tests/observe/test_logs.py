"""One log line per request, text or JSON, captured from a real gateway: the fields are there,
the key secrets never are; every response carries x-request-id."""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from typing import Any

import httpx
import orjson
import pytest

from tests.observe.conftest import Env
from tollway.observe.logs import FIELDS, JsonFormatter, TextFormatter, logging_config


def parse_text_line(line: str) -> tuple[str, dict[str, str]]:
    """`<time> <LEVEL> <logger> <message> k=v …` → (message, fields)."""
    _time, _level, _logger, message, *pairs = shlex.split(line)
    return message, dict(pair.split("=", 1) for pair in pairs)


def record_with(fields: dict[str, Any], message: str = "request") -> logging.LogRecord:
    record = logging.LogRecord("tollway.request", logging.INFO, __file__, 1, message, (), None)
    setattr(record, FIELDS, fields)
    return record


def test_text_and_json_formatters_render_the_same_fields() -> None:
    fields = {
        "request_id": "abc-1",
        "status": 502,
        "error": 'every candidate failed; last error: "bad" = gateway',
        "model": None,  # absent values are left out
        "stream": False,
    }
    message, parsed = parse_text_line(TextFormatter().format(record_with(fields)))
    assert message == "request"
    assert parsed == {
        "request_id": "abc-1",
        "status": "502",
        "error": 'every candidate failed; last error: "bad" = gateway',
        "stream": "False",
    }
    entry = orjson.loads(JsonFormatter().format(record_with(fields)))
    assert entry.pop("time").endswith("Z")
    assert entry == {
        "level": "INFO",
        "logger": "tollway.request",
        "message": "request",
        "request_id": "abc-1",
        "status": 502,
        "error": 'every candidate failed; last error: "bad" = gateway',
        "stream": False,
    }


def test_text_values_are_one_line_and_bounded() -> None:
    line = TextFormatter().format(record_with({"error": "a\nb" + "x" * 1000}))
    assert "\n" not in line
    assert len(line) < 500


def test_control_characters_a_client_sent_are_escaped_in_text_lines() -> None:
    model = "x\x00\x1b[2J\x1b]0;owned\x07\x7f"  # NUL, a clear-screen and a title escape
    line = TextFormatter().format(record_with({"model": model}, message=f"unknown {model}"))
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in line), repr(line)
    assert 'model="x\\x00\\x1b[2J\\x1b]0;owned\\x07\\x7f"' in line
    assert "unknown x\\x00\\x1b[2J" in line


def test_logging_config_is_accepted_by_dictconfig() -> None:
    for fmt in ("text", "json"):
        config = logging_config("info", fmt)
        assert config["loggers"]["uvicorn.access"]["handlers"] == []
        # Applying it is what `tollway serve` does; restore the test's logging afterwards.
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            logging.config.dictConfig(config)
            assert logging.getLogger("tollway").level == logging.INFO
        finally:
            for name in ("tollway", "uvicorn"):
                logger = logging.getLogger(name)
                logger.handlers.clear()
                logger.propagate = True
                logger.setLevel(logging.NOTSET)
            root.handlers[:] = handlers
            root.setLevel(level)


async def lines_for(caplog: pytest.LogCaptureFixture, request_id: str) -> dict[str, Any]:
    """The request line of one request (written when its response has ended)."""
    deadline = time.monotonic() + 5
    while True:
        for record in caplog.records:
            fields = getattr(record, FIELDS, None)
            if (
                record.name == "tollway.request"
                and record.getMessage() == "request"
                and fields
                and fields["request_id"] == request_id
            ):
                return dict(fields)
        assert time.monotonic() < deadline, f"no line for {request_id}"
        await asyncio.sleep(0.02)


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_inference_line_has_the_fields(env: Env, captured: pytest.LogCaptureFixture) -> None:
    response = await env.chat(env.alice, model="m-flaky", max_tokens=5)
    assert response.status_code == 200
    line = await lines_for(captured, response.headers["x-request-id"])
    usage = response.json()["usage"]
    assert line["method"] == "POST" and line["path"] == "/v1/chat/completions"
    assert line["status"] == 200 and line["latency_ms"] >= 0
    assert line["key_name"] == "p1-inf" and isinstance(line["key_id"], int)
    assert line["user_id"] == env.alice.user_id and line["project_id"] == env.alice.project_id
    assert (line["model"], line["served_model"], line["provider"]) == ("m-flaky",) * 2 + ("good",)
    assert (line["attempts"], line["fallbacks"]) == (2, 1)
    assert line["failed_attempts"].startswith("broken/m-flaky: ")
    assert line["prompt_tokens"] == usage["prompt_tokens"]
    assert line["completion_tokens"] == usage["completion_tokens"]
    assert line["credits"] == usage["prompt_tokens"] + 2 * usage["completion_tokens"]
    assert line["usage_source"] == "upstream" and line["outcome"] == "success"
    assert line["error"] is None
    assert (line["cached_prompt_tokens"], line["cache_write_tokens"]) == (0, 0)
    assert line["reasoning_tokens"] == 0


async def test_inference_line_has_the_token_classes(
    env: Env, captured: pytest.LogCaptureFixture
) -> None:
    long = [{"role": "user", "content": " ".join(["word"] * 1500)}]  # 1503 prompt tokens
    response = await env.chat(env.alice, messages=long, reasoning_effort="high", max_tokens=300)
    assert response.status_code == 200
    line = await lines_for(captured, response.headers["x-request-id"])
    assert line["prompt_tokens"] == 1503
    assert (line["cached_prompt_tokens"], line["cache_write_tokens"]) == (751, 375)
    assert line["reasoning_tokens"] == 256
    assert line["completion_tokens"] == response.json()["usage"]["completion_tokens"]


async def test_every_request_leaves_a_line(env: Env, captured: pytest.LogCaptureFixture) -> None:
    async with httpx.AsyncClient(base_url=env.root) as client:
        management = await client.get(
            "/v1/user/balance", headers={"Authorization": f"Bearer {env.bob.management_key}"}
        )
        unauthorized = await client.get(
            "/v1/user/balance", headers={"Authorization": "Bearer tw-not-a-real-key"}
        )
        missing = await client.get("/v1/nowhere")
        failed = await client.post(
            "/v1/chat/completions",
            json={"model": "m-down", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {env.alice.inference_key}"},
        )
    line = await lines_for(captured, management.headers["x-request-id"])
    assert (line["status"], line["key_name"], line["user_id"]) == (200, "p1-mgmt", env.bob.user_id)
    assert "outcome" not in line  # management calls are not inference records
    line = await lines_for(captured, unauthorized.headers["x-request-id"])
    assert (line["status"], line["error"]) == (401, "invalid API key")
    assert "key_id" not in line
    line = await lines_for(captured, missing.headers["x-request-id"])
    assert (line["status"], line["path"]) == (404, "/v1/nowhere")
    line = await lines_for(captured, failed.headers["x-request-id"])
    assert (line["status"], line["outcome"], line["attempts"]) == (503, "upstream_error", 1)
    assert line["error"].startswith("every candidate failed")
    levels = {
        r.levelname
        for r in captured.records
        if getattr(r, FIELDS, {}).get("request_id") == failed.headers["x-request-id"]
    }
    assert levels == {"WARNING"}


async def test_no_secret_in_any_log_line(env: Env, captured: pytest.LogCaptureFixture) -> None:
    bogus = "tw-" + "s3cr3t" * 8
    async with httpx.AsyncClient(base_url=env.root) as client:
        for who in (env.alice, env.bob, env.carol):
            await client.get(
                "/v1/manage/api-keys", headers={"Authorization": f"Bearer {who.management_key}"}
            )
            for model in ("m-good", "m-flaky", "m-down", "unknown"):
                await env.chat(who, model=model)
        await client.get("/v1/user/balance", headers={"Authorization": f"Bearer {bogus}"})
        await client.post("/v1/chat/completions", headers={"Authorization": bogus}, content=b"{bad")
        created = await client.post(
            "/v1/manage/api-keys",
            json={"name": "fresh"},
            headers={"Authorization": f"Bearer {env.alice.management_key}"},
        )
    assert created.status_code == 201
    secrets = [
        bogus,
        created.json()["api_key"],
        *(m.management_key for m in (env.alice, env.bob, env.carol)),
        *(m.inference_key for m in (env.alice, env.bob, env.carol)),
    ]
    await lines_for(captured, created.headers["x-request-id"])
    text = "\n".join(
        f(r) for r in captured.records for f in (TextFormatter().format, JsonFormatter().format)
    )
    assert text.count("tollway.request") >= 16
    for secret in secrets:
        assert secret not in text
        assert secret[3:20] not in text  # not even a fragment of its random part


async def test_x_request_id_is_generated_or_kept(
    env: Env, captured: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient(base_url=env.root) as client:
        generated = await client.get("/health")
        kept = await client.get("/health", headers={"x-request-id": "client-1.a:b_c"})
        too_long = await client.get("/health", headers={"x-request-id": "a" * 129})
        odd = await client.get("/health", headers={"x-request-id": "<script>"})
        unknown = await client.get("/v1/nowhere", headers={"x-request-id": "trace-404"})
        refused = await client.get("/v1/manage/requests")
    own = generated.headers["x-request-id"]
    assert own and len(own) <= 64
    assert kept.headers["x-request-id"] == "client-1.a:b_c"
    line = await lines_for(captured, (await _line_id(captured, "client-1.a:b_c")))
    assert line["client_request_id"] == "client-1.a:b_c"
    for response in (too_long, odd):
        assert response.headers["x-request-id"] not in ("a" * 129, "<script>")
        assert response.headers["x-request-id"].split("-")[0] == own.split("-")[0]
    assert unknown.status_code == 404 and unknown.headers["x-request-id"] == "trace-404"
    assert refused.status_code == 401 and refused.headers["x-request-id"]
    # An inference request's record carries the gateway's own id; the client's beside it.
    async with httpx.AsyncClient(base_url=env.root) as client:
        chat = await client.post(
            "/v1/chat/completions",
            json={"model": "m-good", "messages": [{"role": "user", "content": "hi"}]},
            headers={
                "Authorization": f"Bearer {env.alice.inference_key}",
                "x-request-id": "my-trace-7",
            },
        )
    assert chat.headers["x-request-id"] == "my-trace-7"
    [row] = await env.wait_for_rows(env.alice, 1)
    assert row["client_request_id"] == "my-trace-7"
    assert row["request_id"] != "my-trace-7"
    detail = await env.manage(env.alice, f"requests/{row['request_id']}")
    assert detail.status_code == 200


async def _line_id(caplog: pytest.LogCaptureFixture, client_id: str) -> str:
    deadline = time.monotonic() + 5
    while True:
        for record in caplog.records:
            fields = getattr(record, FIELDS, None)
            if fields and fields.get("client_request_id") == client_id:
                return str(fields["request_id"])
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_unexpected_fault_is_a_500_with_a_request_id(
    env: Env, captured: pytest.LogCaptureFixture
) -> None:
    async with env.world.db.write() as conn:
        await conn.exec_driver_sql("ALTER TABLE users RENAME COLUMN balance_credits TO gone")
    async with httpx.AsyncClient(base_url=env.root) as client:
        response = await client.get(
            "/v1/user/balance", headers={"Authorization": f"Bearer {env.alice.management_key}"}
        )
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
    line = await lines_for(captured, response.headers["x-request-id"])
    assert (line["status"], line["error"]) == (500, "internal server error")
