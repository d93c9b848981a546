"""Reading an upstream's usage into token classes: once, tolerant of what upstreams send."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.providers.usage import MAX_REPORTED_TOKENS, TokenUsage, classes_of, read_usage


def test_openai_details_are_read() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "total_tokens": 140,
        "prompt_tokens_details": {"cached_tokens": 60, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 25},
    }
    assert read_usage(usage) == TokenUsage(100, 40, cached_prompt=60, reasoning=25)


def test_cache_writes_as_openrouter_or_anthropic_compatible_proxies_report_them() -> None:
    openrouter = {
        "prompt_tokens": 100,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 30},
    }
    assert read_usage(openrouter) == TokenUsage(100, 1, cached_prompt=10, cache_write=30)
    proxy = {"prompt_tokens": 100, "completion_tokens": 1, "cache_creation_input_tokens": 20}
    assert read_usage(proxy) == TokenUsage(100, 1, cache_write=20)


@pytest.mark.parametrize(
    "details",
    [
        None,
        "x",
        [],
        {},
        {"cached_tokens": None},
        {"cached_tokens": "5"},
        {"cached_tokens": -1},
        {"cached_tokens": True},
        {"cached_tokens": 1.5},
        {"cached_tokens": MAX_REPORTED_TOKENS + 1},
    ],
)
def test_absent_null_or_garbage_details_count_as_none(details: Any) -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "prompt_tokens_details": details,
        "completion_tokens_details": details,
    }
    assert read_usage(usage) == TokenUsage(10, 5)


def test_classes_are_capped_at_their_totals() -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 9},
    }
    tokens = read_usage(usage)
    assert tokens == TokenUsage(10, 5, cached_prompt=8, cache_write=2, reasoning=5)
    assert tokens is not None and tokens.uncached_prompt == 0


@pytest.mark.parametrize(
    "usage",
    [
        None,
        [],
        {},
        {"prompt_tokens": "10"},
        {"prompt_tokens": -1, "completion_tokens": 1},
        {"prompt_tokens": 1, "completion_tokens": True},
    ],
)
def test_unusable_totals_are_none(usage: Any) -> None:
    assert read_usage(usage) is None
    assert classes_of(usage) == TokenUsage()


def test_embeddings_usage_has_no_completion() -> None:
    assert read_usage({"prompt_tokens": 7, "total_tokens": 7}) == TokenUsage(7, 0)
    assert read_usage({"prompt_tokens": 7, "completion_tokens": None}) == TokenUsage(7, 0)


def test_chat_usage_round_trips() -> None:
    tokens = TokenUsage(100, 40, cached_prompt=50, cache_write=25, reasoning=10)
    assert read_usage(tokens.chat()) == tokens
    assert tokens.chat()["total_tokens"] == 140
    assert tokens.chat(embeddings=True) == {"prompt_tokens": 100, "total_tokens": 100}


def test_inconsistent_classes_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="within the prompt"):
        TokenUsage(10, 0, cached_prompt=6, cache_write=5)
    with pytest.raises(ValueError, match="within the completion"):
        TokenUsage(10, 1, reasoning=2)
    with pytest.raises(ValueError, match="negative"):
        TokenUsage(-1, 0)
