"""A client that leaves while it sends a request body: on the Management API and on an
inference endpoint, one clean log line (status 499, no trace), no 500 sent or logged,
nothing written; on both backends."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI

from tests.http.test_hostile_input import _state
from tests.support.asgi import asgi_client
from tests.support.world import World
from tollway.app import create_app
from tollway.settings import Settings


async def _leave_mid_body(app: FastAPI, method: str, path: str, key: str) -> list[Any]:
    """Send a head declaring 1,000 body bytes, then 10 of them, then leave."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"name": "', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"tollway"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"1000"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
        "app": app,
    }
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("method", "path", "key_kind"),
    [
        ("POST", "/v1/manage/api-keys", "management"),
        ("PUT", "/v1/project-configs", "management"),
        ("POST", "/v1/chat/completions", "inference"),
    ],
)
async def test_a_client_gone_mid_body_is_a_clean_line_not_a_500(
    world: World,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    key_kind: str,
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    key = alice.management_key if key_kind == "management" else alice.inference_key
    app = create_app(Settings(database_url=database_url))
    async with asgi_client(app) as api:
        before = await _state(api, alice)
        caplog.set_level(logging.INFO, logger="tollway")
        caplog.clear()
        sent = await _leave_mid_body(app, method, path, key)
        after = await _state(api, alice)
    assert all(m.get("status") != 500 for m in sent), sent
    assert not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert not any(r.getMessage() == "unhandled error" for r in caplog.records)
    lines = [
        r for r in caplog.records if r.name == "tollway.request" and r.getMessage() == "request"
    ]
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert fields["status"] == 499
    assert fields["error"] == "client disconnected before its request body was complete"
    assert lines[0].levelno == logging.INFO
    assert after == before
