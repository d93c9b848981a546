from __future__ import annotations

import httpx

from tests.http.conftest import bearer
from tests.support.asgi import asgi_client
from tests.support.world import World
from tollway.app import create_app
from tollway.settings import Settings
from tollway.state import AppState


async def test_models_list_every_endpoint_with_prices_flags_and_live_state(
    world: World, database_url: str
) -> None:
    ada = await world.member("ada", "p1")
    app = create_app(Settings(database_url=database_url))
    async with asgi_client(app) as api:
        state: AppState = app.state.tollway
        eu, cheap, fast = state.registry.endpoints_of("tollway-demo-chat")
        state.health.record_success(eu, ttft_ms=42.0, completion_tokens=11, total_ms=142.0)
        for _ in range(3):
            state.health.record_failure(cheap)

        response = await api.get("/v1/manage/models", headers=bearer(ada.management_key))
        assert response.status_code == 200
        body = response.json()
        assert [p["slug"] for p in body["providers"]] == ["demo-eu", "demo-cheap", "demo-fast"]
        chat = next(m for m in body["models"] if m["id"] == "tollway-demo-chat")
        assert chat["fallback"] == ["tollway-demo-small"]
        assert chat["kind"] == "chat"
        by_provider = {e["provider"]: e for e in chat["endpoints"]}
        assert by_provider["demo-eu"] == {
            "provider": "demo-eu",
            "provider_name": "Demo EU",
            "upstream_model": "demo-chat",
            "pricing": {
                "input_token": 0.2,
                "output_token": 0.6,
                "cached_input_token": 0.2,
                "cache_write_token": 0.2,
                "currency": "EUR",
            },
            "quantization": None,
            "eu_native": True,
            "zero_data_retention": True,
            "ttft_ms": 42.0,
            "tokens_per_second": 110.0,
            "samples": 1,
            "consecutive_failures": 0,
            "circuit": "closed",
        }
        assert by_provider["demo-cheap"]["circuit"] == "open"
        assert by_provider["demo-cheap"]["consecutive_failures"] == 3
        assert by_provider["demo-fast"]["quantization"] == "fp8"
        assert by_provider["demo-fast"]["samples"] == 0  # the registry's hints
        assert by_provider["demo-fast"]["ttft_ms"] == 100.0
        # Reading the state spends no half-open trial: the circuit is still open for routing.
        assert state.health.is_open(cheap)
        assert fast.key == "tollway-demo-chat@demo-fast"


async def test_models_need_a_management_key(world: World, api: httpx.AsyncClient) -> None:
    ada = await world.member("ada", "p1")
    refused = await api.get("/v1/manage/models", headers=bearer(ada.inference_key))
    assert refused.status_code == 403
    assert (await api.get("/v1/manage/models")).status_code == 401
