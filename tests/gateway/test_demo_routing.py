"""The built-in demo's three providers differ for real: the demo's mock (`--demo-pace`)
answers each provider's upstream models at the speed its hints announce, so `cost`, `speed`
and `balanced` pick three different providers — and keep picking them once the gateway has
measured real calls (the paces are far apart: 100 ms vs 250 ms vs 800 ms to the first token).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import running_gateway
from tests.support.mock_server import running_mock
from tests.support.world import World
from tollway.providers.mock_settings import DEMO_PACES, MockSettings
from tollway.providers.registry import load_registry

PICKS = {"cost": "demo-cheap", "speed": "demo-fast", "balanced": "demo-eu"}


def test_every_demo_upstream_model_has_its_providers_pace() -> None:
    registry = load_registry(None)
    for model_id in registry.models:
        if registry.models[model_id].kind == "embedding":
            continue
        for endpoint in registry.endpoints_of(model_id):
            pace = DEMO_PACES[endpoint.upstream_model]
            hints = endpoint.provider.hints
            assert (pace.ttft_ms, pace.tokens_per_second) == (
                hints.ttft_ms,
                hints.tokens_per_second,
            ), endpoint.upstream_model


def test_the_demo_mock_answers_each_provider_at_its_own_pace() -> None:
    with running_mock(MockSettings(paces=DEMO_PACES)) as url:
        took = {}
        for upstream in ("demo-chat-fp8", "demo-chat", "demo-chat-lite"):
            started = time.monotonic()
            reply = httpx.post(
                f"{url}/chat/completions",
                json={"model": upstream, "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            )
            took[upstream] = time.monotonic() - started
            assert reply.status_code == 200
            tokens = reply.json()["usage"]["completion_tokens"]
            # A lower bound only: the mock waits at least its pace.
            assert took[upstream] >= DEMO_PACES[upstream].whole_answer_s(tokens) * 0.99


async def test_cost_speed_and_balanced_pick_different_demo_providers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"sqlite:///{tmp_path / 'demo.db'}"
    world = World(database_url)
    await world.migrate()
    member = await world.member("demo", "p", credits_eur="5")
    await world.close()
    with running_mock(MockSettings(paces=DEMO_PACES)) as mock_url:
        monkeypatch.setenv("TOLLWAY_MOCK_URL", mock_url)
        with running_gateway(database_url) as (base_url, _):
            management = {"Authorization": f"Bearer {member.management_key}"}
            async with httpx.AsyncClient(timeout=60) as client:
                for preference, provider in [*PICKS.items(), *PICKS.items()]:
                    # The project's own preference (requests may not override it by default).
                    put = await client.put(
                        f"{base_url}/project-configs",
                        json={"active": True, "inference_config": {"preference": preference}},
                        headers=management,
                    )
                    assert put.status_code == 200, put.text
                    for _ in range(2):  # the second call is ranked on a measured speed
                        reply = await client.post(
                            f"{base_url}/chat/completions",
                            json={
                                "model": "tollway-demo-chat",
                                "messages": [{"role": "user", "content": "Hello"}],
                                "include_metadata": True,
                            },
                            headers={"Authorization": f"Bearer {member.inference_key}"},
                        )
                        assert reply.status_code == 200, reply.text
                        chosen = reply.json()["metadata"]["routing_results"]["selected_provider"]
                        assert (preference, chosen) == (preference, provider)
