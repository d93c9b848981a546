"""Claude Code, pinned, unchanged, against the gateway: `claude -p` over Anthropic Messages
(`ANTHROPIC_BASE_URL` + `ANTHROPIC_API_KEY`), with and without extended thinking, on both
backends, with nothing but loopback reachable."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from tests.clients.conftest import AGENT_MODEL, AgentGateway, serving_agents
from tests.support.mock_server import fetch_mock_stats
from tests.support.money import seen_balance
from tests.support.node_clients import npm_client

CLAUDE_CODE = ("@anthropic-ai/claude-code", "2.1.332", "claude")
DEAD_PROXY = "http://127.0.0.1:9"  # anything not loopback fails at once, offline
STARTING_CREDITS = 10_000_000  # the member's 10 EUR


@pytest.fixture
async def claude_gateway(database_url: str, tmp_path: Path) -> AsyncIterator[AgentGateway]:
    async with serving_agents(database_url, tmp_path) as gateway:
        yield gateway


def claude_env(gateway: AgentGateway, home: Path, *, thinking: bool) -> dict[str, str]:
    """The environment docs/coding-agents.md gives, plus a home of its own and no network."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.base_url.removesuffix("/v1"),
        "ANTHROPIC_MODEL": AGENT_MODEL,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": AGENT_MODEL,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": AGENT_MODEL,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": AGENT_MODEL,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "HTTP_PROXY": DEAD_PROXY,
        "HTTPS_PROXY": DEAD_PROXY,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    # Thinking on (Claude Code's default: adaptive, with an effort) or off. Both ways of
    # passing the key: x-api-key (ANTHROPIC_API_KEY) and Authorization (ANTHROPIC_AUTH_TOKEN).
    env["MAX_THINKING_TOKENS"] = "8000" if thinking else "0"
    env["ANTHROPIC_AUTH_TOKEN" if thinking else "ANTHROPIC_API_KEY"] = gateway.key
    return env


def run_claude(
    gateway: AgentGateway, tmp_path: Path, prompt: str, *, thinking: bool
) -> subprocess.CompletedProcess[str]:
    claude = npm_client(*CLAUDE_CODE)
    home, work = tmp_path / "claude-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    return subprocess.run(
        [str(claude), "-p", prompt, "--model", AGENT_MODEL, "--output-format", "json"],
        cwd=work,
        env=claude_env(gateway, home, thinking=thinking),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize("thinking", [False, True], ids=["no-thinking", "thinking"])
async def test_claude_code_says_hi_through_the_gateway(
    claude_gateway: AgentGateway, tmp_path: Path, thinking: bool
) -> None:
    gateway = claude_gateway
    done = await asyncio.to_thread(run_claude, gateway, tmp_path, "say hi", thinking=thinking)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    result = orjson.loads(done.stdout)
    assert result["is_error"] is False, result
    assert result["result"]  # the model's last answer, printed
    stats = fetch_mock_stats(gateway.mock)
    assert stats["requests"] >= 1
    forwarded: dict[str, Any] = stats["last_request"]
    # Claude Code's system prompt and the system message it puts inside `messages` lead, as
    # one system message; its tools arrive as functions.
    assert forwarded["messages"][0]["role"] == "system"
    assert [m["role"] for m in forwarded["messages"][1:]].count("system") == 0
    assert "Bash" in {tool["function"]["name"] for tool in forwarded["tools"]}
    if thinking:
        assert forwarded["reasoning_effort"] == "high"  # Claude Code's default effort
    rows = await logged(gateway, stats["requests"])
    assert rows and all(r[0] == "messages" and r[1] == "success" for r in rows), rows
    charged = sum(r[2] for r in rows)
    assert charged > 0
    balance = await seen_balance(
        gateway.base_url.removesuffix("/v1"), gateway.member.management_key
    )
    assert balance == STARTING_CREDITS - charged
    # What the translation did is in the request log's detail view.
    detail = await request_detail(gateway)
    translation = detail["translation"]
    assert "cache_control" in translation["dropped"]
    assert "messages[].role=system → system prompt" in translation["translated"]
    if thinking:  # adaptive thinking, its effort translated; context management dropped
        assert "output_config.effort → reasoning_effort" in translation["translated"]
        assert {"context_management", "thinking.display"} <= set(translation["dropped"])


async def logged(gateway: AgentGateway, at_least: int) -> list[tuple[str, str, int]]:
    """The request log's rows (written off the request path: waited for, briefly)."""
    query = text("SELECT endpoint, status, cost_credits FROM request_log ORDER BY created_at_ms")
    rows: list[tuple[str, str, int]] = []
    for _ in range(250):
        async with gateway.world.db.read() as conn:
            rows = [(e, s, int(c)) for e, s, c in (await conn.execute(query)).all()]
        if len(rows) >= at_least:
            break
        await asyncio.sleep(0.02)
    return rows


async def request_detail(gateway: AgentGateway) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {gateway.member.management_key}"}
    async with httpx.AsyncClient(base_url=gateway.base_url, headers=headers) as client:
        listed = (await client.get("/manage/requests")).json()["requests"]
        response = await client.get(f"/manage/requests/{listed[0]['request_id']}")
    assert response.status_code == 200, response.text
    return dict(response.json())
