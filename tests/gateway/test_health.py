from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import running_gateway, write_registry
from tests.support.mock_server import running_mock_app
from tests.support.world import World
from tollway.gateway.health import HealthBook
from tollway.gateway.routing import ModelPlan, plan_model
from tollway.projects.policy import effective_policy
from tollway.providers.mock_settings import MockSettings
from tollway.providers.registry import Registry, ResolvedEndpoint, load_registry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def endpoint() -> ResolvedEndpoint:
    return load_registry(None).endpoints_of("tollway-demo-chat")[0]


def test_circuit_opens_after_threshold_and_half_opens_for_one_trial() -> None:
    clock = Clock()
    book = HealthBook(failure_threshold=3, cooldown_s=30, clock=clock)
    ep = endpoint()
    for _ in range(2):
        book.record_failure(ep)
        assert not book.is_open(ep)
    book.record_failure(ep)
    assert book.is_open(ep)
    assert not book.admit(ep)
    clock.now += 31
    assert not book.is_open(ep)
    assert not book.is_open(ep)  # asking is free: nobody took the trial yet
    assert book.admit(ep)  # the first attempt after the cooldown is the trial
    assert book.is_open(ep)  # everyone else still skips it
    assert not book.admit(ep)
    book.record_failure(ep)  # the trial failed: open again for a full cooldown
    clock.now += 29
    assert book.is_open(ep)
    clock.now += 2
    assert book.admit(ep)
    book.release(ep)  # ended without a verdict (cancelled): the trial is given back
    assert not book.is_open(ep)
    assert book.admit(ep)
    book.record_success(ep, completion_tokens=5, total_ms=20)
    assert not book.is_open(ep)
    assert book.admit(ep) and book.admit(ep)  # closed: no trial to take


def test_a_lost_trial_frees_itself_after_a_cooldown() -> None:
    clock = Clock()
    book = HealthBook(failure_threshold=1, cooldown_s=30, clock=clock)
    ep = endpoint()
    book.record_failure(ep)
    clock.now += 31
    assert book.admit(ep)
    clock.now += 31  # its outcome never came back
    assert book.admit(ep)


def fallback_document(good_url: str, flaky_url: str) -> dict[str, object]:
    def ep(provider: str) -> dict[str, object]:
        return {
            "provider": provider,
            "upstream_model": "mock-chat",
            "pricing": {"input_token": 1, "output_token": 1},
        }

    return {
        "providers": [
            {"slug": "good", "name": "good", "base_url": good_url},
            {"slug": "flaky", "name": "flaky", "base_url": flaky_url},
        ],
        "models": [
            {"id": "main", "context_size": 4096, "fallback": ["spare"], "endpoints": [ep("good")]},
            {"id": "spare", "context_size": 4096, "endpoints": [ep("flaky")]},
        ],
    }


def fallback_registry(tmp_path: Path) -> Registry:
    document = fallback_document("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1")
    return load_registry(write_registry(tmp_path / "registry.yaml", document))


def plans_of(registry: Registry, book: HealthBook) -> list[ModelPlan]:
    """What the pipeline plans for a request to `main`: its fallback chain included."""
    policy = effective_policy(None, {})
    return [
        plan_model(registry, policy, model, prompt_estimate=5, max_tokens=8, health=book)
        for model in (registry.models["main"], registry.models["spare"])
    ]


def test_ranking_never_spends_the_half_open_trial(tmp_path: Path) -> None:
    # Every request to `main` also ranks its fallback `spare`, but `main` serves it: the
    # trial of `spare`'s open circuit must wait for a request that really tries `spare`.
    registry = fallback_registry(tmp_path)
    clock = Clock()
    book = HealthBook(failure_threshold=3, cooldown_s=30, clock=clock)
    (spare,) = registry.endpoints_of("spare")
    for _ in range(3):
        book.record_failure(spare)
    assert plans_of(registry, book)[1].filtered[0].filter_failed == "health"
    clock.now += 31
    for _ in range(5):  # five requests served by `main`, each ranking `spare` too
        ranked = plans_of(registry, book)[1].ranked
        assert [c.endpoint.key for c in ranked] == ["spare@flaky"]
    assert book.admit(spare)  # the first real attempt still finds the trial
    assert plans_of(registry, book)[1].unhealthy == [spare]


def test_non_streamed_calls_at_one_length_keep_the_hinted_shape_scaled() -> None:
    book = HealthBook()
    ep = endpoint()
    hinted_16, hinted_256 = book.predicted_latency_ms(ep, 16), book.predicted_latency_ms(ep, 256)
    for _ in range(3):
        book.record_success(ep, completion_tokens=16, total_ms=hinted_16 / 100)
    assert book.predicted_latency_ms(ep, 16) == pytest.approx(hinted_16 / 100)
    # 100 times faster than the hints where measured: the whole line is scaled alike.
    assert book.predicted_latency_ms(ep, 256) == pytest.approx(hinted_256 / 100)
    assert book.snapshot(ep)["samples"] == 3


def test_non_streamed_calls_of_different_lengths_fit_the_line() -> None:
    book = HealthBook()
    ep = endpoint()
    for tokens in (10, 50, 100, 10, 50, 100):
        book.record_success(ep, completion_tokens=tokens, total_ms=10 + 5 * tokens)
    snapshot = book.snapshot(ep)
    assert snapshot["ttft_ms"] == pytest.approx(10, abs=0.5)
    assert snapshot["ms_per_token"] == pytest.approx(5, abs=0.01)
    assert book.predicted_latency_ms(ep, 256) == pytest.approx(10 + 5 * 256, rel=0.01)


def test_a_stream_gives_the_first_token_time_and_the_rate() -> None:
    book = HealthBook()
    ep = endpoint()
    book.record_success(ep, ttft_ms=100, completion_tokens=100, total_ms=1100)
    snapshot = book.snapshot(ep)
    assert snapshot["ttft_ms"] == pytest.approx(100, rel=0.01)
    assert snapshot["tokens_per_second"] == pytest.approx(100, rel=0.01)


def test_newer_samples_weigh_more() -> None:
    book = HealthBook(alpha=0.5)
    ep = endpoint()
    book.record_success(ep, ttft_ms=10, completion_tokens=100, total_ms=110)
    book.record_success(ep, ttft_ms=30, completion_tokens=100, total_ms=130)
    # Old points weigh 0.5, new ones 1: the intercept moves two thirds of the way.
    assert book.snapshot(ep)["ttft_ms"] == pytest.approx(10 + 20 * 2 / 3, rel=0.01)


def test_a_provider_called_only_without_streaming_is_judged_on_its_calls() -> None:
    # The defect: `fast` answered whole calls in 7 ms but kept its 50 tokens/s hint, while
    # `slow` had streamed at 200 tokens/s after a 120 ms first token — `slow` was picked.
    book = HealthBook()
    fast, slow = load_registry(None).endpoints_of("tollway-demo-chat")[:2]
    for _ in range(5):
        book.record_success(fast, completion_tokens=16, total_ms=7)
        book.record_success(slow, ttft_ms=120, completion_tokens=16, total_ms=200)
    for tokens in (16, 256):
        assert book.predicted_latency_ms(fast, tokens) < book.predicted_latency_ms(slow, tokens)


async def test_through_the_gateway_the_trial_waits_for_a_real_attempt(tmp_path: Path) -> None:
    # `main` (served by `good`) falls back to `spare` (served by `flaky`): requests to `main`
    # rank `spare` too. Once `flaky` recovers, the first request that needs `spare` must get
    # its trial — not a 503 because rankings spent it.
    with (
        running_mock_app() as (good_url, _),
        running_mock_app(MockSettings(error_rate=1.0, error_status=503)) as (flaky_url, flaky),
    ):
        document = fallback_document(good_url, flaky_url)
        registry = write_registry(tmp_path / "registry.yaml", document)
        url = f"sqlite:///{tmp_path / 'gw.db'}"
        world = World(url)
        await world.migrate()
        member = await world.member("gil", "p1", credits_eur="1")
        headers = {"Authorization": f"Bearer {member.inference_key}"}

        async def chat(client: httpx.AsyncClient, model: str) -> httpx.Response:
            return await client.post(
                "/chat/completions",
                json={
                    "model": model,
                    "messages": [{"role": "user", "content": "hi"}],
                    "enable_model_fallback": True,
                },
                headers=headers,
            )

        try:
            with running_gateway(url, registry, circuit_cooldown_s=2.0) as (base_url, _):
                async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
                    for _ in range(3):
                        assert (await chat(client, "spare")).status_code == 503
                    refused = await chat(client, "spare")
                    assert "circuit open" in refused.text
                    assert flaky.stats.requests == 3
                    await asyncio.sleep(2.2)
                    for _ in range(3):
                        served = await chat(client, "main")
                        assert served.status_code == 200, served.text
                        assert served.json()["provider"] == "good"
                    assert flaky.stats.requests == 3
                    flaky.settings = MockSettings()  # recovered
                    trial = await chat(client, "spare")
                    assert trial.status_code == 200, trial.text
                    assert flaky.stats.requests == 4
        finally:
            await world.close()


def test_circuit_state_is_read_without_spending_the_trial() -> None:
    clock = Clock()
    book = HealthBook(failure_threshold=2, cooldown_s=30, clock=clock)
    ep = endpoint()
    assert book.circuit(ep) == "closed"
    book.record_failure(ep)
    assert book.circuit(ep) == "closed"
    book.record_failure(ep)
    assert book.circuit(ep) == "open"
    clock.now += 31
    assert book.circuit(ep) == "half_open"
    assert book.circuit(ep) == "half_open"  # reading twice changes nothing
    assert book.admit(ep)  # so the trial is still there for a request
    assert book.circuit(ep) == "half_open"  # while the trial runs
    book.record_success(ep, completion_tokens=5, total_ms=20)
    assert book.circuit(ep) == "closed"
