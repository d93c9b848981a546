"""Token classes: an upstream's chat `usage` read once into a `TokenUsage` (docs/billing.md).

Prompt tokens include the cached ones (read from the provider's prompt cache) and the
cache-written ones (stored in it for later requests); completion tokens include the reasoning
ones. Everything downstream — the charge, the usage events, the request log, metrics and each
dialect's answer — reads the classes from here, never from the upstream's JSON again.

What is read from a chat-completions `usage`:
- `prompt_tokens`, `completion_tokens` (required; else the usage is unusable and the gateway
  counts tokens itself);
- `prompt_tokens_details.cached_tokens` (OpenAI and most compatible APIs);
- `prompt_tokens_details.cache_write_tokens` (OpenRouter), or a top-level
  `cache_creation_input_tokens` (Anthropic-compatible proxies);
- `completion_tokens_details.reasoning_tokens`.
A detail that is absent, null, negative, not an integer or larger than its total counts as 0
or is capped at what is left of the total: classes never add up to more than the total.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from tollway.frozen import frozen

# Token counts are stored in 32-bit columns; no real request comes near this, so a larger
# count is malformed usage (counted by the gateway instead), never a failed settlement.
MAX_REPORTED_TOKENS = 2**31 - 1


@frozen
class TokenUsage:
    """One request's tokens by class. `prompt` includes `cached_prompt` and `cache_write`;
    `completion` includes `reasoning`."""

    prompt: int = 0
    completion: int = 0
    cached_prompt: int = 0
    cache_write: int = 0
    reasoning: int = 0

    def __post_init__(self) -> None:
        if min(self.prompt, self.completion, self.cached_prompt, self.cache_write) < 0:
            raise ValueError("token counts cannot be negative")
        if self.reasoning < 0 or self.reasoning > self.completion:
            raise ValueError("reasoning tokens must be within the completion tokens")
        if self.cached_prompt + self.cache_write > self.prompt:
            raise ValueError("cached and cache-written tokens must be within the prompt tokens")

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    @property
    def uncached_prompt(self) -> int:
        """Prompt tokens charged at the plain input price."""
        return self.prompt - self.cached_prompt - self.cache_write

    def chat(self, *, embeddings: bool = False) -> dict[str, Any]:
        """The OpenAI chat-completions `usage` object (embeddings: prompt and total only)."""
        if embeddings:
            return {"prompt_tokens": self.prompt, "total_tokens": self.prompt}
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.total,
            "prompt_tokens_details": {
                "cached_tokens": self.cached_prompt,
                "cache_write_tokens": self.cache_write,
            },
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        }


def is_count(value: object) -> TypeGuard[int]:
    return (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_REPORTED_TOKENS
    )


def _detail(details: object, key: str) -> int:
    value = details.get(key) if isinstance(details, dict) else None
    return value if is_count(value) else 0


def read_usage(usage: object) -> TokenUsage | None:
    """The token classes of a chat `usage` object, or None when its totals are unusable
    (absent or not counts; `completion_tokens` may be absent, as for embeddings)."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens", 0)
    if completion is None:
        completion = 0
    if not (is_count(prompt) and is_count(completion)):
        return None
    prompt_details = usage.get("prompt_tokens_details")
    cached = min(_detail(prompt_details, "cached_tokens"), prompt)
    written = _detail(prompt_details, "cache_write_tokens") or _detail(
        usage, "cache_creation_input_tokens"
    )
    written = min(written, prompt - cached)
    reasoning = min(_detail(usage.get("completion_tokens_details"), "reasoning_tokens"), completion)
    return TokenUsage(prompt, completion, cached, written, reasoning)


def classes_of(usage: object) -> TokenUsage:
    """`read_usage`, or all zeros: for the dialects, which translate the gateway's own usage."""
    return read_usage(usage) or TokenUsage()
