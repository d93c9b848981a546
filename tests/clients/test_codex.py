"""Codex CLI, pinned, unchanged, against the gateway: `codex exec` over the Responses API
(`wire_api = "responses"`) in a read-only sandbox in a temporary folder, with nothing but
loopback reachable."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from sqlalchemy import text

from tests.clients.conftest import AGENT_MODEL, AgentGateway
from tests.support.mock_server import fetch_mock_stats
from tests.support.node_clients import npm_client
from tollway.providers.mock_replies import DEFAULT_REPLY_TOKENS, words_for

CODEX = ("@openai/codex", "0.171.0", "codex")
# Anything that is not loopback goes to a proxy that is not there: fails at once, offline.
DEAD_PROXY = "http://127.0.0.1:9"


def codex_config(base_url: str) -> str:
    return f"""\
model = "{AGENT_MODEL}"
model_provider = "tollway"
check_for_update_on_startup = false

[model_providers.tollway]
name = "Tollway"
base_url = "{base_url}"
env_key = "TOLLWAY_KEY"
wire_api = "responses"

[analytics]
enabled = false

[feedback]
enabled = false
"""


def run_codex(
    gateway: AgentGateway, tmp_path: Path, prompt: str
) -> subprocess.CompletedProcess[str]:
    codex = npm_client(*CODEX)
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(codex_config(gateway.base_url))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "TOLLWAY_KEY": gateway.key,
        "HTTP_PROXY": DEAD_PROXY,
        "HTTPS_PROXY": DEAD_PROXY,
        "ALL_PROXY": DEAD_PROXY,
        "NO_PROXY": "127.0.0.1,localhost",
        "OTEL_SDK_DISABLED": "true",
        "RUST_LOG": "error",
    }
    return subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", "--sandbox", "read-only", prompt],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )


async def test_codex_exec_says_hi_through_the_gateway(
    agent_gateway: AgentGateway, tmp_path: Path
) -> None:
    done = await asyncio.to_thread(run_codex, agent_gateway, tmp_path, "say hi")
    assert done.returncode == 0, done.stderr[-3000:]
    stats = fetch_mock_stats(agent_gateway.mock)
    # The mock calls one of Codex's tools (picked by a hash of "say hi": a sub-agent tool of
    # the `multi_agent_v1` namespace, with arguments Codex refuses), Codex answers with the
    # tool's output, the mock answers that in text, and the turn ends.
    assert stats["requests"] == 2
    forwarded = stats["last_request"]
    names = {tool["function"]["name"] for tool in forwarded["tools"]}
    assert {"exec_command", "multi_agent_v1__spawn_agent"} <= names
    assert not any("web_search" in name for name in names)  # dropped: no upstream searches
    messages = forwarded["messages"]
    assert messages[0]["role"] == "system"  # Codex's developer instructions
    call, output = messages[-2], messages[-1]
    assert call["tool_calls"][0]["function"]["name"] == "multi_agent_v1__spawn_agent"
    assert output["role"] == "tool"
    assert output["tool_call_id"] == call["tool_calls"][0]["id"]
    reply = " ".join(words_for(output["content"], DEFAULT_REPLY_TOKENS))
    assert reply in done.stdout  # Codex printed the model's final answer
    assert await logged(agent_gateway) == [("responses", "success", True)] * 2


async def logged(gateway: AgentGateway) -> list[tuple[str, str, bool]]:
    """The request log's rows (written off the request path: waited for, briefly)."""
    query = text("SELECT endpoint, status, stream FROM request_log ORDER BY created_at_ms")
    rows: list[tuple[str, str, bool]] = []
    for _ in range(250):
        async with gateway.world.db.read() as conn:
            rows = [(e, s, bool(st)) for e, s, st in (await conn.execute(query)).all()]
        if len(rows) >= 2:
            break
        await asyncio.sleep(0.02)
    return rows
