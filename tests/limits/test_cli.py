"""`tollway rate-limits` as a real process on SQLite and PostgreSQL, and a limit added from the
command line enforced by a running server."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import orjson

from tests.limits.test_in_process import registry
from tests.support.gateway import write_registry
from tests.support.mock_server import running_mock
from tests.support.processes import serve_process, tollway
from tests.support.world import World


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


async def test_rate_limits_from_the_command_line(
    world: World, database_url: str, tmp_path: Path
) -> None:
    alice = await world.member("alice", "p1", credits_eur="5")
    await world.member("bob", "p1", role="member")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return tollway("rate-limits", *args, database_url=database_url)

    assert orjson.loads(ok(cli("list", "p1", "--json"))) == {"rate_limits": []}
    project = orjson.loads(ok(cli("add", "p1", "--scope", "project", "--rpm", "1", "--json")))
    assert project["requests_per_minute"] == 1 and project["tokens_per_minute"] is None
    key = orjson.loads(
        ok(
            cli(
                "add",
                "p1",
                "--scope",
                "key",
                "--user",
                "bob",
                "--key",
                "p1-inf",
                "--tpm",
                "500",
                "--json",
            )
        )
    )
    assert key["key_name"] == "p1-inf" and key["tokens_per_minute"] == 500
    assert "each_user" in ok(cli("add", "p1", "--scope", "each_user", "--rpm", "9"))
    listed = orjson.loads(ok(cli("list", "p1", "--json")))["rate_limits"]
    assert {r["id"] for r in listed} >= {project["id"], key["id"]} and len(listed) == 3
    plain = ok(cli("list", "p1")).splitlines()
    assert plain[0].split() == ["id", "scope", "user", "/", "key", "requests/min", "tokens/min"]
    rows = {line.split()[0]: line.split()[1:] for line in plain[2:]}
    assert rows[project["id"]] == ["project", "-", "1", "-"]
    assert rows[key["id"]] == ["key", "p1-inf", "-", "500"]

    one_line_error(cli("add", "p1", "--scope", "galaxy", "--rpm", "1"), "scope")
    one_line_error(cli("add", "p1", "--scope", "project"), "requests_per_minute")
    one_line_error(cli("add", "p1", "--scope", "project", "--rpm", "0"), "requests_per_minute")
    one_line_error(cli("add", "p1", "--scope", "key", "--key", "p1-inf", "--rpm", "1"), "--user")
    one_line_error(cli("add", "nowhere", "--scope", "project", "--rpm", "1"), "nowhere")
    one_line_error(cli("delete", "p1", "no-such-id"), "no-such-id")

    with (
        running_mock() as upstream,
        serve_process(
            database_url,
            TOLLWAY_PROVIDERS=str(write_registry(tmp_path / "registry.yaml", registry(upstream))),
        ) as (root, _),
    ):
        headers = {"Authorization": f"Bearer {alice.inference_key}"}
        body = {
            "model": "chat-rl",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5,
        }
        async with httpx.AsyncClient(base_url=root, headers=headers, timeout=30) as client:
            await asyncio.sleep(1.1)  # whatever the server cached is older than its 1 s
            first = await client.post("/v1/chat/completions", json=body)
            assert first.status_code == 200, first.text
            second = await client.post("/v1/chat/completions", json=body)
            assert second.status_code == 429
            ok(cli("delete", "p1", project["id"]))
            await asyncio.sleep(1.1)  # changed by another process: seen within 1 s
            third = await client.post("/v1/chat/completions", json=body)
            assert third.status_code == 200, third.text
    assert len(orjson.loads(ok(cli("list", "p1", "--json")))["rate_limits"]) == 2
