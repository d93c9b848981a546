"""Requests page: an Anthropic Messages request's detail shows what its translation
translated and dropped (names only)."""

from __future__ import annotations

import time

import httpx
from playwright.sync_api import Page, expect

from tests.console.conftest import Site, sign_in


def test_a_messages_requests_detail_shows_its_translation(page: Page, site: Site) -> None:
    body = {
        "model": "tollway-demo-chat",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "low"},
        "context_management": {"edits": []},
    }
    response = httpx.post(
        f"{site.root}/v1/messages?beta=true",
        json=body,
        headers={"x-api-key": site.admin.inference_key, "anthropic-version": "2023-06-01"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    for _ in range(250):  # the request log is written off the request path
        if site.api("GET", f"/v1/manage/requests/{request_id}").status_code == 200:
            break
        time.sleep(0.02)
    sign_in(page, site, route=f"#/requests/{request_id}")
    expect(page.locator("#detail-translated")).to_have_text(
        "output_config.effort → reasoning_effort"
    )
    expect(page.locator("#detail-dropped")).to_have_text("context_management")
