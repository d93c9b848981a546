from __future__ import annotations

from typing import Any

from tollway.projects.config import InferenceConfig, ProjectConfig
from tollway.projects.policy import Policy, effective_policy
from tollway.providers.registry import load_registry


def config(*, active: bool = True, allow_overwrite: bool = False, **fields: Any) -> ProjectConfig:
    return ProjectConfig(
        id="c",
        project_id="p",
        active=active,
        allow_overwrite=allow_overwrite,
        inference_config=InferenceConfig(**fields),
        schema_version="v1",
        created_at_ms=0,
        updated_at_ms=0,
    )


def test_inactive_or_missing_configuration_means_defaults_plus_request() -> None:
    for project in (None, config(active=False, eu_native=True, preference="speed")):
        policy = effective_policy(project, {"preference": "cost"})
        assert policy.preference == "cost"
        assert policy.eu_native is False


def test_overwrite_replaces_every_field() -> None:
    policy = effective_policy(
        config(allow_overwrite=True, eu_native=True, allowed_providers=["demo-eu"]),
        {"eu_native": False, "allowed_providers": None, "allow_zero_data_retention": True},
    )
    assert policy.eu_native is False
    assert policy.allowed_providers is None
    assert policy.zero_data_retention_only is True


def test_enforced_policy_only_tightens() -> None:
    project = config(
        allowed_providers=["demo-eu", "demo-fast"],
        allow_quantization=True,
        enable_model_fallback=True,
        preference="cost",
    )
    policy = effective_policy(
        project,
        {
            "allowed_providers": ["demo-fast", "demo-cheap"],  # demo-cheap is outside
            "allow_quantization": False,  # tighter: applied
            "enable_model_fallback": False,  # tighter: applied
            "eu_native": True,  # tighter: applied
            "allow_zero_data_retention": False,  # same as the project: nothing to say
            "preference": "speed",  # never taken when the policy is enforced
            "include_metadata": True,  # presentation only: always taken
        },
    )
    assert policy.allowed_providers == frozenset({"demo-fast"})
    assert policy.allow_quantization is False
    assert policy.enable_model_fallback is False
    assert policy.eu_native is True
    assert policy.preference == "cost"
    assert policy.include_metadata is True
    notes = " | ".join(policy.applied_filters)
    assert "ignored request field allowed_providers" in notes and "demo-cheap" in notes
    assert "ignored request field preference" in notes
    assert "tightened allow_quantization" in notes


def test_enforced_policy_ignores_loosening() -> None:
    project = config(eu_native=True, allow_quantization=False, allowed_providers=["demo-eu"])
    policy = effective_policy(
        project, {"eu_native": False, "allow_quantization": True, "allowed_providers": None}
    )
    assert policy.eu_native is True
    assert policy.allow_quantization is False
    assert policy.allowed_providers == frozenset({"demo-eu"})
    assert sum("ignored request field" in note for note in policy.applied_filters) == 3


def test_filters_name_the_first_reason() -> None:
    registry = load_registry(None)
    by_provider = {ep.provider.slug: ep for ep in registry.endpoints_of("tollway-demo-chat")}
    strict = Policy(eu_native=True, allow_quantization=False, zero_data_retention_only=True)
    assert strict.rejects(by_provider["demo-eu"]) is None
    assert strict.rejects(by_provider["demo-cheap"]) == (
        "eu_native",
        "provider demo-cheap is not EU-native",
    )
    assert strict.rejects(by_provider["demo-fast"]) == (
        "allow_quantization",
        "endpoint is quantized (fp8)",
    )
    blacklisted = Policy(blacklisted_models=frozenset({"tollway-demo-chat"}))
    assert blacklisted.rejects(by_provider["demo-eu"]) == (
        "blacklisted_models",
        "model tollway-demo-chat is blacklisted",
    )
