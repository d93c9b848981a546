"""The metrics of one process, against real requests: each family counts what happened."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai

from tests.observe.conftest import samples, total
from tests.support.gateway import running_gateway
from tests.support.world import World
from tollway.gateway.health import HealthBook
from tollway.providers.registry import load_registry

TOKEN = "scrape-secret"


async def test_every_family_counts_real_requests(world: World, registry_path: Path) -> None:
    member = await world.member("mia", "pm", credits_eur="10")
    before = await world.accounts.balance_credits(member.user_id)
    with running_gateway(world_url(world), registry_path, metrics_token=TOKEN) as (base, _):
        client = openai.AsyncOpenAI(base_url=base, api_key=member.inference_key, max_retries=0)
        # Cost keeps the cheap eu-broken first: by speed, eu-quant's measured calls would
        # soon outrank eu-broken's hints.
        async with httpx.AsyncClient() as http:
            configured = await http.put(
                f"{base}/project-configs",
                json={"active": True, "inference_config": {"preference": "cost"}},
                headers={"Authorization": f"Bearer {member.management_key}"},
            )
        assert configured.status_code == 200, configured.text
        for _ in range(4):  # eu-broken fails (503), eu-quant serves; its circuit opens at 3
            await client.chat.completions.create(
                model="chat-flaky", messages=[{"role": "user", "content": "hi"}]
            )
        # A long prompt (the mock caches half, writes a quarter) with reasoning.
        long = " ".join(["word"] * 1500)  # 1503 prompt tokens
        stream = await client.chat.completions.create(
            model="chat-b",
            messages=[{"role": "user", "content": long}],
            stream=True,
            reasoning_effort="low",
        )
        async for _chunk in stream:
            pass
        async with httpx.AsyncClient() as http:
            response = await http.get(
                f"{base.removesuffix('/v1')}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
            )
    scrape = samples(response.text)
    charged = before - await world.accounts.balance_credits(member.user_id)

    assert total(scrape, "tollway_requests_total", status="success") == 5
    assert total(scrape, "tollway_upstream_failures_total", provider="eu-broken") == 3
    assert (
        total(
            scrape, "tollway_upstream_duration_seconds_count", provider="eu-broken", outcome="error"
        )
        == 3
    )
    assert total(scrape, "tollway_upstream_duration_seconds_count", outcome="success") == 5
    # The first three were served after a failure; the fourth skipped the open circuit.
    assert total(scrape, "tollway_fallbacks_total", model="chat-flaky", provider="eu-quant") == 3
    assert total(scrape, "tollway_fallbacks_total") == 3
    assert total(scrape, "tollway_circuit_open", model="chat-flaky", provider="eu-broken") == 1
    assert total(scrape, "tollway_time_to_first_token_seconds_count", model="chat-b") == 1
    assert total(scrape, "tollway_time_to_first_token_seconds_count", model="chat-flaky") == 0
    assert total(scrape, "tollway_credits_charged_total") == charged > 0
    classes = {"model": "chat-b", "provider": "eu-fast"}
    assert total(scrape, "tollway_tokens_total", kind="prompt", **classes) == 1503
    assert total(scrape, "tollway_class_tokens_total", **{"class": "cached_prompt"}) == 751
    assert total(scrape, "tollway_class_tokens_total", **{"class": "cache_write"}) == 375
    assert total(scrape, "tollway_class_tokens_total", **{"class": "reasoning"}, **classes) == 16
    assert total(scrape, "tollway_meter_duration_seconds_count", operation="reserve") == 5
    assert total(scrape, "tollway_meter_duration_seconds_count", operation="settle") == 5
    assert total(scrape, "tollway_open_reservations") == 0
    assert total(scrape, "tollway_open_streams") == 0
    # No budget, credits to spare: the first waits for the lease to be drawn, the rest are
    # reserved in memory.
    assert total(scrape, "tollway_reservations_total", path="lease_after_draw") == 1
    assert total(scrape, "tollway_reservations_total", path="lease") == 4
    assert total(scrape, "tollway_reservations_total", path="database") == 0


def world_url(world: World) -> str:
    return str(world.db.engine.url.render_as_string(hide_password=False)).replace(
        "sqlite+aiosqlite", "sqlite"
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_circuit_gauge_follows_opening_and_closing() -> None:
    endpoint = load_registry(None).endpoints_of("tollway-demo-chat")[0]
    changes: list[tuple[str, bool]] = []
    clock = FakeClock()
    book = HealthBook(
        failure_threshold=2,
        cooldown_s=10,
        clock=clock,
        on_circuit=lambda ep, is_open: changes.append((ep.key, is_open)),
    )
    book.record_failure(endpoint)
    assert changes == []
    book.record_failure(endpoint)
    book.record_failure(endpoint)  # still open: told once
    assert changes == [(endpoint.key, True)]
    clock.now = 11
    assert not book.is_open(endpoint)  # the half-open trial
    book.record_success(endpoint, ttft_ms=5, completion_tokens=3, total_ms=10)
    book.record_success(endpoint, ttft_ms=5, completion_tokens=3, total_ms=10)
    assert changes == [(endpoint.key, True), (endpoint.key, False)]
