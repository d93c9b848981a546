"""The mock's token classes: cached, cache-written and reasoning tokens, deterministically.

Real upstreams report these in `prompt_tokens_details` / `completion_tokens_details`; the mock
reports them by a fixed rule so the demo and the tests see every class priced:

- a prompt of at least `CACHE_FROM_TOKENS` (1024) tokens: half of it (rounded down) is
  reported as read from the prompt cache (`cached_tokens`) and a quarter (rounded down) as
  written to it (`cache_write_tokens`, as OpenRouter reports it); a shorter prompt has none;
- `reasoning_effort` set: each choice "thinks" `REASONING_TOKENS[effort]` tokens (64 for an
  effort it does not know), reported as `reasoning_tokens` and counted in `completion_tokens`
  as OpenAI does — within `max_tokens` when it is given (the reasoning gets what the answer
  leaves). The reasoning itself is not sent, as OpenAI does not send it.
"""

from __future__ import annotations

from typing import Any

CACHE_FROM_TOKENS = 1024
REASONING_TOKENS = {"none": 0, "minimal": 8, "low": 16, "medium": 64, "high": 256, "xhigh": 512}
_UNKNOWN_EFFORT_TOKENS = 64


def reasoning_tokens(effort: object, answer_tokens: int, max_tokens: int | None) -> int:
    """The reasoning tokens of one choice whose visible answer has `answer_tokens`."""
    if effort is None:
        return 0
    wanted = REASONING_TOKENS.get(effort, _UNKNOWN_EFFORT_TOKENS) if isinstance(effort, str) else 0
    if max_tokens is not None:
        wanted = min(wanted, max(max_tokens - answer_tokens, 0))
    return wanted


def usage(prompt: int, completion: int, reasoning: int) -> dict[str, Any]:
    """The chat `usage` object the mock reports (completion includes reasoning)."""
    cached = prompt // 2 if prompt >= CACHE_FROM_TOKENS else 0
    written = prompt // 4 if prompt >= CACHE_FROM_TOKENS else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
