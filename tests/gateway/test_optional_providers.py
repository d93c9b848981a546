"""An optional provider without its secret: the gateway starts without it, says so in its
log, and serves what the other providers serve, through a real upstream that checks keys."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import running_gateway, write_registry
from tests.support.mock_server import running_mock
from tests.support.world import World
from tollway.providers.mock_settings import MockSettings


def model(model_id: str, *providers: str) -> dict[str, object]:
    return {
        "id": model_id,
        "context_size": 4096,
        "endpoints": [
            {
                "provider": p,
                "upstream_model": "demo-chat",
                "pricing": {"input_token": 1, "output_token": 1},
            }
            for p in providers
        ],
    }


async def test_gateway_serves_without_the_skipped_provider(
    world: World,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    member = await world.member("alice", "p", credits_eur="1")
    monkeypatch.setenv("KEPT_KEY", "k-kept")
    monkeypatch.delenv("SPARE_KEY", raising=False)
    with running_mock(MockSettings(api_key="k-kept")) as upstream:
        registry = write_registry(
            tmp_path / "providers.yaml",
            {
                "providers": [
                    {
                        "slug": "kept",
                        "name": "Kept",
                        "base_url": upstream,
                        "api_key_env": "KEPT_KEY",
                    },
                    {
                        "slug": "spare",
                        "name": "Spare",
                        "base_url": upstream,
                        "api_key_env": "SPARE_KEY",
                        "optional": True,
                    },
                ],
                "models": [
                    {**model("shared", "spare", "kept"), "fallback": ["spare-only"]},
                    model("spare-only", "spare"),
                ],
            },
        )
        with (
            caplog.at_level(logging.WARNING, logger="tollway.registry"),
            running_gateway(database_url, registry) as (base, _),
        ):
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                listed = (await client.get("/models")).json()
                assert [m["id"] for m in listed["data"]] == ["shared"]
                assert listed["data"][0]["providers"] == ["kept"]
                headers = {"Authorization": f"Bearer {member.inference_key}"}
                messages = [{"role": "user", "content": "hi"}]
                chat = await client.post(
                    "/chat/completions",
                    json={"model": "shared", "messages": messages},
                    headers=headers,
                )
                assert chat.status_code == 200, chat.text
                assert chat.json()["provider"] == "kept"  # the upstream took the kept secret
                gone = await client.post(
                    "/chat/completions",
                    json={"model": "spare-only", "messages": messages},
                    headers=headers,
                )
                assert gone.status_code == 404
    warnings = [r.getMessage() for r in caplog.records if r.name == "tollway.registry"]
    assert any("optional provider 'spare' skipped" in w for w in warnings), warnings
    assert any("model 'spare-only' dropped" in w for w in warnings), warnings
    assert all("k-kept" not in w for w in warnings)
