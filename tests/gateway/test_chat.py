from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import GatewayEnv


async def put_config(gw: GatewayEnv, **fields: Any) -> None:
    body: dict[str, Any] = {"active": fields.pop("active", True)}
    if "allow_overwrite" in fields:
        body["allow_overwrite"] = fields.pop("allow_overwrite")
    body["inference_config"] = fields
    async with httpx.AsyncClient() as client:
        response = await client.put(
            f"{gw.base_url}/project-configs", json=body, headers=gw.mgmt_headers()
        )
    assert response.status_code == 200, response.text


async def test_chat_completion_through_the_sdk(gw: GatewayEnv) -> None:
    client = gw.client()
    response = await client.chat.completions.create(
        model="chat-a", messages=[{"role": "user", "content": "hello there"}]
    )
    assert response.model == "chat-a"
    assert response.choices[0].message.content
    assert response.usage is not None
    assert response.usage.prompt_tokens == 2 + 3
    assert response.model_extra is not None
    assert response.model_extra["provider"] in {"eu-fast", "us-cheap", "eu-quant"}
    assert getattr(response, "metadata", None) is None


def _metadata(response: Any) -> dict[str, Any]:
    # Newer SDKs declare a `metadata` field of their own; read the raw payload either way.
    # (The SDK types it as dict[str, str] but keeps the raw value: no validation on parse.)
    metadata: dict[str, Any] | None = getattr(response, "metadata", None)
    if metadata is None and response.model_extra:
        metadata = response.model_extra.get("metadata")
    assert metadata is not None, "metadata missing"
    return metadata


async def _served_by(gw: GatewayEnv, **extra: Any) -> tuple[str, dict[str, Any]]:
    response = await gw.client().chat.completions.create(
        model=extra.pop("model", "chat-a"),
        messages=[{"role": "user", "content": "pick a provider"}],
        max_tokens=8,
        extra_body={"include_metadata": True, **extra},
    )
    metadata = _metadata(response)
    return metadata["routing_results"]["selected_provider"], metadata


async def test_preference_cost_speed_balanced(gw: GatewayEnv) -> None:
    # Speed first, on a fresh gateway: ranked on the registry's hints (50 / 400 / 2000 ms).
    await put_config(gw, preference="speed")
    provider, meta = await _served_by(gw)
    assert provider == "eu-fast"
    assert meta["routing_trace"]["scoring_function"]["function"] == "predicted_latency_ms"
    await put_config(gw, preference="cost")
    provider, meta = await _served_by(gw)
    assert provider == "us-cheap"
    assert meta["routing_trace"]["scoring_function"]["function"] == "expected_cost_credits"
    await put_config(gw, preference="balanced")
    provider, meta = await _served_by(gw)
    scored = meta["routing_trace"]["scored_candidates"]
    scores = [c["score"] for c in scored if c["model"] == "chat-a"]
    assert scores == sorted(scores)
    assert provider == scored[0]["provider"]


async def test_speed_ranking_learns_from_measurements(gw: GatewayEnv) -> None:
    # Hints say eu-quant (400 ms) is slower than eu-fast (50 ms); with eu-fast excluded,
    # eu-quant is measured at its real ~20 ms first-token time and its prediction drops.
    await put_config(gw, preference="speed", allowed_providers=["eu-quant", "us-cheap"])
    _, before = await _served_by(gw)
    first = before["routing_trace"]["scored_candidates"][0]
    assert first["provider"] == "eu-quant"
    assert first["scoring_context"]["samples"] == 0
    _, after = await _served_by(gw)
    learned = after["routing_trace"]["scored_candidates"][0]
    assert learned["scoring_context"]["samples"] == 1
    assert learned["scoring_context"]["ttft_ms"] < 400


async def test_policy_filters(gw: GatewayEnv) -> None:
    await put_config(gw, preference="cost", eu_native=True)
    provider, meta = await _served_by(gw)
    assert provider != "us-cheap"
    filtered = {
        f["provider"]: f["filter_failed"] for f in meta["routing_trace"]["filtered_out_candidates"]
    }
    assert filtered["us-cheap"] == "eu_native"

    await put_config(gw, preference="cost", eu_native=False, allow_quantization=False)
    provider, meta = await _served_by(gw)
    filtered = {
        f["provider"]: f["filter_failed"] for f in meta["routing_trace"]["filtered_out_candidates"]
    }
    assert filtered == {"eu-quant": "allow_quantization"}

    await put_config(gw, preference="cost", allow_quantization=True, allow_zero_data_retention=True)
    provider, _ = await _served_by(gw)
    assert provider == "eu-fast"

    await put_config(gw, allow_zero_data_retention=False, allowed_providers=["eu-quant"])
    provider, _ = await _served_by(gw)
    assert provider == "eu-quant"


async def test_blacklisted_model_falls_back_or_is_refused(gw: GatewayEnv) -> None:
    await put_config(gw, blacklisted_models=["chat-a"], enable_model_fallback=True)
    _provider, meta = await _served_by(gw)
    assert meta["model_used"] == "chat-b"
    assert meta["fallback_from"] == "chat-a"
    await put_config(gw, enable_model_fallback=False)
    with pytest.raises(openai.BadRequestError) as caught:
        await _served_by(gw)
    assert "blacklisted" in str(caught.value)


async def test_allow_overwrite_false_tightens_but_never_loosens(gw: GatewayEnv) -> None:
    await put_config(gw, preference="cost", eu_native=True, allow_overwrite=False)
    provider, meta = await _served_by(gw, eu_native=False, preference="speed")
    assert provider != "us-cheap"  # eu_native stays on
    applied = meta["routing_results"]["applied_filters"]
    assert any("ignored request field eu_native" in a for a in applied)
    assert any("ignored request field preference" in a for a in applied)
    assert meta["routing_trace"]["scoring_function"]["function"] == "expected_cost_credits"
    # Tightening is honoured.
    provider, meta = await _served_by(gw, allow_quantization=False)
    assert provider == "eu-fast"
    assert any(
        "tightened allow_quantization" in a for a in meta["routing_results"]["applied_filters"]
    )
    provider, _ = await _served_by(gw, allowed_providers=["eu-quant"])
    assert provider == "eu-quant"


async def test_allow_overwrite_true_lets_requests_loosen(gw: GatewayEnv) -> None:
    await put_config(gw, preference="speed", eu_native=True, allow_overwrite=True)
    provider, _ = await _served_by(gw, eu_native=False, preference="cost")
    assert provider == "us-cheap"


async def test_inactive_configuration_uses_defaults_plus_request(gw: GatewayEnv) -> None:
    await put_config(gw, active=False, eu_native=True, preference="speed")
    provider, meta = await _served_by(gw, preference="cost")
    assert provider == "us-cheap"
    assert meta["routing_trace"]["filtered_out_candidates"] == []


async def test_provider_fallback_and_trace(gw: GatewayEnv) -> None:
    await put_config(gw, preference="cost")
    provider, meta = await _served_by(gw, model="chat-flaky")
    assert provider == "eu-quant"
    statuses = {c["provider"]: c["status"] for c in meta["routing_trace"]["scored_candidates"]}
    assert statuses["eu-broken"] == "failed"
    assert statuses["eu-quant"] == "success"
    assert meta["model_used"] == "chat-flaky"
    assert meta["fallback_from"] is None
    assert {
        "initial_candidates",
        "filtered_out_candidates",
        "scored_candidates",
        "scoring_function",
    } <= set(meta["routing_trace"])
    assert set(meta["routing_results"]["cost"]) >= {
        "prompt_cost",
        "completion_cost",
        "total_cost",
        "currency",
    }


async def test_model_fallback_chain_on_and_off(gw: GatewayEnv) -> None:
    _provider, meta = await _served_by(gw, model="chat-down")
    assert meta["model_used"] == "chat-b"
    assert meta["fallback_from"] == "chat-down"
    assert meta["fallback_chain"] == ["chat-down", "chat-b"]
    with pytest.raises(openai.InternalServerError) as caught:
        await _served_by(gw, model="chat-down", enable_model_fallback=False)
    assert caught.value.status_code == 503
    assert "503" in str(caught.value)


async def test_circuit_breaker_opens_after_repeated_failures(gw: GatewayEnv) -> None:
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            await _served_by(gw, model="chat-down", enable_model_fallback=False)
    with pytest.raises(openai.InternalServerError) as caught:
        await _served_by(gw, model="chat-down", enable_model_fallback=False)
    assert caught.value.status_code == 503
    assert "circuit open" in str(caught.value)


async def test_upstream_validation_error_is_returned_as_is(gw: GatewayEnv) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await _served_by(gw, model="chat-invalid")
    assert caught.value.status_code == 400
    # The upstream's own body, untouched: its code, not one of ours.
    assert caught.value.code == "mock_400"


async def test_upstream_credential_error_falls_back_and_is_not_relayed(gw: GatewayEnv) -> None:
    await put_config(gw, preference="cost")
    provider, meta = await _served_by(gw, model="chat-keyfail")
    assert provider == "us-cheap"
    failed = [c for c in meta["routing_trace"]["scored_candidates"] if c["status"] == "failed"]
    assert [c["provider"] for c in failed] == ["eu-fast"]
    assert "rejected the gateway's credentials" in failed[0]["error"]
    assert "mock" not in failed[0]["error"].split(":", 1)[1]  # nothing of the upstream's body


async def test_context_filter(gw: GatewayEnv) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await gw.client().chat.completions.create(
            model="chat-tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=100
        )
    assert "context_size" in str(caught.value)
