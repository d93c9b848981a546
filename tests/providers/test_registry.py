from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tollway.errors import ConfigError
from tollway.providers.pricing import Pricing
from tollway.providers.registry import (
    DEMO_REGISTRY,
    RegistryError,
    load_registry,
)
from tollway.providers.usage import TokenUsage

EXAMPLE = Path(__file__).parents[2] / "docs" / "providers.example.yaml"


def minimal() -> dict[str, Any]:
    return {
        "providers": [
            {"slug": "alpha", "name": "Alpha", "base_url": "http://alpha.test/v1"},
            {
                "slug": "beta",
                "name": "Beta",
                "base_url": "https://beta.test/v1/",
                "eu_native": True,
            },
        ],
        "models": [
            {
                "id": "chat-a",
                "context_size": 4096,
                "fallback": ["chat-b"],
                "endpoints": [
                    {
                        "provider": "alpha",
                        "upstream_model": "a-up",
                        "pricing": {"input_token": 0.2, "output_token": 0.6},
                    },
                    {
                        "provider": "beta",
                        "upstream_model": "a-up-fp8",
                        "pricing": {"input_token": "0.10", "output_token": "0.30"},
                        "quantization": "fp8",
                    },
                ],
            },
            {
                "id": "chat-b",
                "context_size": 2048,
                "endpoints": [
                    {
                        "provider": "alpha",
                        "upstream_model": "b-up",
                        "pricing": {"input_token": 0.05, "output_token": 0.15},
                    }
                ],
            },
        ],
    }


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False) if document is not None else "")
    return path


def problems(tmp_path: Path, document: object, environ: dict[str, str] | None = None) -> str:
    path = write(tmp_path, document)
    with pytest.raises(RegistryError) as caught:
        load_registry(path, environ or {})
    assert all(line.startswith(f"{path}: ") for line in caught.value.problems)
    return str(caught.value)


def test_demo_registry_loads_and_points_at_the_mock() -> None:
    registry = load_registry(None, {})
    assert registry.source == str(DEMO_REGISTRY)
    assert set(registry.models) == {"tollway-demo-chat", "tollway-demo-small", "tollway-demo-embed"}
    assert set(registry.providers) == {"demo-eu", "demo-cheap", "demo-fast"}
    assert {p.base_url for p in registry.providers.values()} == {"http://127.0.0.1:9100/v1"}
    chat = registry.endpoints_of("tollway-demo-chat")
    assert [e.provider.slug for e in chat] == ["demo-eu", "demo-cheap", "demo-fast"]
    assert [e.quantized for e in chat] == [False, False, True]
    assert registry.model("tollway-demo-chat") is not None
    assert registry.model("tollway-demo-chat").fallback == ("tollway-demo-small",)  # type: ignore[union-attr]
    assert registry.model("tollway-demo-embed").kind == "embedding"  # type: ignore[union-attr]
    demo_eu = registry.provider("demo-eu")
    assert demo_eu is not None and demo_eu.eu_native and demo_eu.zero_data_retention
    assert demo_eu.api_key is None


def test_demo_chat_models_fit_what_coding_agents_send() -> None:
    """Claude Code asks for max_tokens 32000 with ~80 KB of prompt (the gateway estimates 4
    bytes a token); agents need at least 128k of context."""
    registry = load_registry(None, {})
    for model in registry.models.values():
        if model.kind == "chat":
            assert model.context_size >= 128_000, model.id
            assert 80_000 // 4 + 32_000 <= model.context_size


def test_demo_base_url_follows_the_environment() -> None:
    registry = load_registry(None, {"TOLLWAY_MOCK_URL": "http://10.0.0.5:9200/v1/"})
    assert {p.base_url for p in registry.providers.values()} == {"http://10.0.0.5:9200/v1"}


def test_example_registry_loads_with_keys_set() -> None:
    names = ["MISTRAL_API_KEY", "SCW_SECRET_KEY", "OVH_AI_ENDPOINTS_ACCESS_TOKEN"]
    environ = dict.fromkeys([*names, "IONOS_API_TOKEN", "NEBIUS_API_KEY"], "secret")
    registry = load_registry(EXAMPLE, environ)
    assert registry.provider("mistral").api_key == "secret"  # type: ignore[union-attr]
    assert registry.provider("local-vllm").api_key is None  # type: ignore[union-attr]
    assert "secret" not in repr(registry.provider("mistral"))


def test_registry_lookups_are_precomputed_and_immutable(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path, minimal()), {})
    endpoints = registry.endpoints_of("chat-a")
    assert endpoints is registry.endpoints_of("chat-a")
    assert endpoints[0].key == "chat-a@alpha"
    assert endpoints[1].upstream_model == "a-up-fp8"
    assert endpoints[1].pricing.input_token == Decimal("0.10")
    assert registry.endpoints_of("nope") == ()
    assert registry.model("nope") is None and registry.provider("nope") is None
    assert registry.provider("beta").base_url == "https://beta.test/v1"  # type: ignore[union-attr]
    assert registry.cheapest_pricing("chat-a") == Pricing(
        input_token=Decimal("0.1"), output_token=Decimal("0.3")
    )
    with pytest.raises(TypeError):
        registry.models["x"] = registry.models["chat-a"]  # type: ignore[index]


def test_env_expansion_with_and_without_default(tmp_path: Path) -> None:
    document = minimal()
    document["providers"][0]["base_url"] = "${ALPHA_URL:-http://fallback.test/v1}"
    document["providers"][1]["base_url"] = "https://${BETA_HOST}/v1"
    document["providers"][1]["timeout_s"] = "${BETA_TIMEOUT:-12.5}"
    registry = load_registry(write(tmp_path, document), {"BETA_HOST": "beta.example"})
    assert registry.provider("alpha").base_url == "http://fallback.test/v1"  # type: ignore[union-attr]
    assert registry.provider("beta").base_url == "https://beta.example/v1"  # type: ignore[union-attr]
    assert registry.provider("beta").timeout_s == 12.5  # type: ignore[union-attr]
    registry = load_registry(
        write(tmp_path, document), {"ALPHA_URL": "http://a/v1", "BETA_HOST": "b"}
    )
    assert registry.provider("alpha").base_url == "http://a/v1"  # type: ignore[union-attr]
    message = problems(tmp_path, document)
    assert "providers[1] (slug=beta).base_url: environment variable BETA_HOST is not set" in message


def test_api_key_is_read_from_the_named_variable(tmp_path: Path) -> None:
    document = minimal()
    document["providers"][1]["api_key_env"] = "BETA_KEY"
    registry = load_registry(write(tmp_path, document), {"BETA_KEY": "k-123"})
    assert registry.provider("beta").api_key == "k-123"  # type: ignore[union-attr]
    for environ in ({}, {"BETA_KEY": ""}):
        message = problems(tmp_path, document, environ)
        assert "providers[1] (slug=beta).api_key_env: environment variable BETA_KEY" in message


def test_api_key_cannot_be_written_in_the_file(tmp_path: Path) -> None:
    document = minimal()
    document["providers"][0]["api_key"] = "sk-leaked"
    message = problems(tmp_path, document)
    assert "providers[0] (slug=alpha).api_key: Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["providers"][1].pop("base_url"),
            "providers[1] (slug=beta).base_url: Field required",
        ),
        (
            lambda d: d["providers"][0].update(slug="Bad_Slug"),
            "providers[0] (slug=Bad_Slug).slug: String should match pattern",
        ),
        (
            lambda d: d["providers"][0].update(base_url="ftp://x"),
            "providers[0] (slug=alpha).base_url: Value error, must be an http",
        ),
        (
            lambda d: d["providers"][0].update(eu_nativ=True),
            "providers[0] (slug=alpha).eu_nativ: Extra inputs are not permitted",
        ),
        (
            lambda d: d["models"][0]["endpoints"][1]["pricing"].update(input_token=-1),
            "models[0] (id=chat-a).endpoints[1] (provider=beta).pricing.input_token: "
            "Input should be greater than or equal to 0",
        ),
        (
            lambda d: d["models"][0]["endpoints"][0]["pricing"].update(cached_input_token=-0.5),
            "models[0] (id=chat-a).endpoints[0] (provider=alpha).pricing.cached_input_token: "
            "Input should be greater than or equal to 0",
        ),
        (
            lambda d: d["models"][0]["endpoints"][0]["pricing"].update(cache_write_token="x"),
            "models[0] (id=chat-a).endpoints[0] (provider=alpha).pricing.cache_write_token: "
            "Input should be a valid decimal",
        ),
        (
            lambda d: d["models"][0]["endpoints"][0]["pricing"].update(cache_read_token=1),
            "models[0] (id=chat-a).endpoints[0] (provider=alpha).pricing.cache_read_token: "
            "Extra inputs are not permitted",
        ),
        (
            lambda d: d["models"][1].update(context_size=0),
            "models[1] (id=chat-b).context_size: Input should be greater than 0",
        ),
        (
            lambda d: d["models"][1].update(kind="image"),
            "models[1] (id=chat-b).kind: Input should be 'chat' or 'embedding'",
        ),
        (
            lambda d: d["models"][1].update(endpoints=[]),
            "models[1] (id=chat-b).endpoints: Tuple should have at least 1 item",
        ),
        (
            lambda d: d.update(providers=[]),
            "providers: Tuple should have at least 1 item",
        ),
        (
            lambda d: d.update(extra_section=[]),
            "extra_section: Extra inputs are not permitted",
        ),
    ],
)
def test_field_errors_name_file_entry_and_field(tmp_path: Path, edit: Any, expected: str) -> None:
    document = minimal()
    edit(document)
    assert expected in problems(tmp_path, document)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["providers"][1].update(slug="alpha"),
            "providers[1] (slug=alpha).slug: duplicate slug, first at providers[0]",
        ),
        (
            lambda d: d["models"][1].update(id="chat-a", fallback=[]),
            "models[1] (id=chat-a).id: duplicate id, first at models[0]",
        ),
        (
            lambda d: d["models"][0]["endpoints"][0].update(provider="gamma"),
            "models[0] (id=chat-a).endpoints[0] (provider=gamma).provider: "
            "unknown provider 'gamma'",
        ),
        (
            lambda d: d["models"][0]["endpoints"][1].update(provider="alpha"),
            "models[0] (id=chat-a).endpoints[1] (provider=alpha).provider: provider 'alpha' listed",
        ),
        (
            lambda d: d["models"][0].update(fallback=["chat-z"]),
            "models[0] (id=chat-a).fallback[0]: unknown model 'chat-z'",
        ),
        (
            lambda d: d["models"][0].update(fallback=["chat-b", "chat-a"]),
            "models[0] (id=chat-a).fallback[1]: a model cannot fall back to itself",
        ),
        (
            lambda d: d["models"][1].update(kind="embedding"),
            "models[0] (id=chat-a).fallback[0]: kind embedding, but chat-a has kind chat",
        ),
    ],
)
def test_cross_reference_errors_name_file_entry_and_field(
    tmp_path: Path, edit: Any, expected: str
) -> None:
    document = minimal()
    edit(document)
    assert expected in problems(tmp_path, document)


def test_every_problem_is_reported_on_one_line(tmp_path: Path) -> None:
    document = minimal()
    document["providers"][0].pop("name")
    document["models"][1]["context_size"] = -5
    path = write(tmp_path, document)
    with pytest.raises(ConfigError) as caught:
        load_registry(path, {})
    assert isinstance(caught.value, RegistryError)
    assert len(caught.value.problems) == 2
    assert all("\n" not in problem for problem in caught.value.problems)
    assert str(caught.value).splitlines() == list(caught.value.problems)


def test_file_level_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(
        RegistryError, match=rf"^{re.escape(str(missing))}: cannot read provider registry"
    ):
        load_registry(missing, {})
    broken = tmp_path / "broken.yaml"
    broken.write_text("providers:\n  - slug: a\n   name: b\n")
    with pytest.raises(
        RegistryError, match=rf"^{re.escape(str(broken))}: invalid YAML: line 3, column"
    ):
        load_registry(broken, {})
    with pytest.raises(RegistryError, match="is empty"):
        load_registry(write(tmp_path, None), {})
    with pytest.raises(RegistryError, match=r"\(top level\): Input should be a valid dictionary"):
        load_registry(write(tmp_path, ["not", "a", "mapping"]), {})


def test_prices_stay_decimal() -> None:
    pricing = Pricing.model_validate({"input_token": 0.1, "output_token": "0.30"})
    assert pricing.input_token == Decimal("0.1")
    assert pricing.output_token == Decimal("0.30")
    with pytest.raises(ValueError, match=r"finite|greater"):
        Pricing.model_validate({"input_token": "NaN", "output_token": 0})


@pytest.mark.parametrize(
    ("input_price", "output_price", "prompt", "completion", "credits"),
    [
        ("0.10", "0.30", 1, 0, 1),  # 0.1 credit rounds up to 1
        ("0.10", "0.30", 10, 10, 4),  # 1 + 3, exact
        ("0.10", "0.30", 11, 10, 5),  # 4.1 rounds up
        ("0.10", "0.30", 0, 0, 0),
        ("2.50", "10", 1_000_000, 1_000_000, 12_500_000),  # 12.50 EUR
        ("0.000001", "0", 1, 0, 1),
        ("0.1", "0.2", 3, 3, 1),  # 0.3 + 0.6 = 0.9 exactly, where floats give 0.9000000000000001
    ],
)
def test_credits_for_is_exact_and_rounds_up(
    input_price: str, output_price: str, prompt: int, completion: int, credits: int
) -> None:
    pricing = Pricing(input_token=Decimal(input_price), output_token=Decimal(output_price))
    assert pricing.credits_for(prompt, completion) == credits


def test_credits_for_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        Pricing(input_token=Decimal(1), output_token=Decimal(1)).credits_for(-1, 0)


def test_cache_prices_default_to_the_input_price() -> None:
    plain = Pricing.model_validate({"input_token": "0.40", "output_token": "1.60"})
    assert plain.cached_input == plain.cache_write == Decimal("0.40")
    assert plain.highest_prompt_price == Decimal("0.40")
    priced = Pricing.model_validate(
        {
            "input_token": "0.40",
            "output_token": "1.60",
            "cached_input_token": "0.10",
            "cache_write_token": "0.50",
        }
    )
    assert (priced.cached_input, priced.cache_write) == (Decimal("0.10"), Decimal("0.50"))
    assert priced.highest_prompt_price == Decimal("0.50")
    free_cache = Pricing.model_validate(
        {"input_token": "1", "output_token": "1", "cached_input_token": 0}
    )
    assert free_cache.cached_input == 0
    with pytest.raises(ValueError, match=r"finite|greater"):
        Pricing.model_validate({"input_token": 1, "output_token": 1, "cache_write_token": "inf"})


@pytest.mark.parametrize(
    ("tokens", "credits"),
    [
        # 0.4 x (1000 - 500 - 250) + 0.1 x 500 + 0.5 x 250 + 1.6 x 200 = 100 + 50 + 125 + 320
        (TokenUsage(1000, 200, cached_prompt=500, cache_write=250, reasoning=150), 595),
        # 0.4 x 2 + 0.1 x 1 + 0.5 x 1 + 1.6 x 0 = 1.4: rounded up once, to 2 (not 1 + 1 + 1)
        (TokenUsage(4, 0, cached_prompt=1, cache_write=1), 2),
        # cached only: 0.1 x 3 = 0.3 rounds up to 1
        (TokenUsage(3, 0, cached_prompt=3), 1),
        # reasoning is part of the completion: priced at the output price, never twice
        (TokenUsage(0, 10, reasoning=10), 16),
        (TokenUsage(), 0),
    ],
)
def test_charge_prices_each_token_class_exactly(tokens: TokenUsage, credits: int) -> None:
    pricing = Pricing.model_validate(
        {
            "input_token": "0.40",
            "output_token": "1.60",
            "cached_input_token": "0.10",
            "cache_write_token": "0.50",
        }
    )
    assert pricing.charge(tokens) == credits
    # Without class prices every prompt token is an input token.
    plain = Pricing(input_token=Decimal("0.40"), output_token=Decimal("1.60"))
    assert plain.charge(tokens) == plain.credits_for(tokens.prompt, tokens.completion)


def test_a_bad_item_gives_one_error_not_a_follow_on(tmp_path: Path) -> None:
    """pydantic adds "Tuple should have at least 1 item" for a non-empty list whose only item
    failed; the reader gets the item's own error and nothing else."""
    document = minimal()
    document["models"][1]["endpoints"][0]["pricing"]["output_token"] = "abc"
    document["providers"][1]["timeout_s"] = "slow"
    path = write(tmp_path, document)
    with pytest.raises(RegistryError) as caught:
        load_registry(path, {})
    assert [p.removeprefix(f"{path}: ") for p in caught.value.problems] == [
        "providers[1] (slug=beta).timeout_s: Input should be a valid number, "
        "unable to parse string as a number",
        "models[1] (id=chat-b).endpoints[0] (provider=alpha).pricing.output_token: "
        "Input should be a valid decimal",
    ]
    assert "Tuple should have at least" not in str(caught.value)


def optional_document() -> dict[str, Any]:
    """alpha needs ALPHA_KEY and is optional; chat-b is served by alpha alone."""
    document = minimal()
    document["providers"][0].update(api_key_env="ALPHA_KEY", optional=True)
    document["providers"][1].update(api_key_env="BETA_KEY")
    return document


def test_optional_provider_without_its_secret_is_skipped_with_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, optional_document())
    registry = load_registry(path, {"BETA_KEY": "b"})
    assert set(registry.providers) == {"beta"}
    assert dict(registry.skipped) == {"alpha": "environment variable ALPHA_KEY is not set or empty"}
    # chat-a keeps its other endpoint; chat-b had no other provider and is dropped, and
    # chat-a's fallback to it goes with it.
    assert [e.provider.slug for e in registry.endpoints_of("chat-a")] == ["beta"]
    assert registry.model("chat-a").fallback == ()  # type: ignore[union-attr]
    assert registry.model("chat-b") is None and registry.endpoints_of("chat-b") == ()
    assert registry.cheapest_pricing("chat-a") == Pricing(
        input_token=Decimal("0.10"), output_token=Decimal("0.30")
    )
    assert registry.warnings == (
        f"{path}: optional provider 'alpha' skipped: environment variable ALPHA_KEY is not "
        "set or empty",
        f"{path}: model 'chat-b' dropped: its only providers were skipped",
        f"{path}: model 'chat-a': fallback to 'chat-b' removed",
    )


def test_optional_provider_with_its_secret_is_used(tmp_path: Path) -> None:
    registry = load_registry(
        write(tmp_path, optional_document()), {"ALPHA_KEY": "a", "BETA_KEY": "b"}
    )
    assert registry.provider("alpha").api_key == "a"  # type: ignore[union-attr]
    assert registry.warnings == () and dict(registry.skipped) == {}
    assert registry.model("chat-a").fallback == ("chat-b",)  # type: ignore[union-attr]


def test_a_required_provider_without_its_secret_still_refuses_the_file(tmp_path: Path) -> None:
    message = problems(tmp_path, optional_document(), {"ALPHA_KEY": "a"})
    assert message.splitlines() == [
        f"{tmp_path / 'providers.yaml'}: providers[1] (slug=beta).api_key_env: environment "
        "variable BETA_KEY is not set or empty"
    ]


def test_no_model_left_is_an_error(tmp_path: Path) -> None:
    document = optional_document()
    document["providers"][1].update(optional=True)
    message = problems(tmp_path, document)
    assert "no model left" in message


def test_optional_must_be_a_boolean(tmp_path: Path) -> None:
    document = minimal()
    document["providers"][0]["optional"] = "sometimes"
    assert "providers[0] (slug=alpha).optional: Input should be a valid boolean" in problems(
        tmp_path, document
    )
