"""An endpoint's prices (registry `pricing`) and the exact charge of a request's tokens by
class (docs/billing.md, token classes)."""

from __future__ import annotations

import math
from decimal import Decimal
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tollway.providers.usage import TokenUsage


class Pricing(BaseModel):
    """EUR per 1M tokens, which is also credits per token (1 EUR = 1,000,000 credits).

    `cached_input_token` prices a prompt token read from the provider's prompt cache,
    `cache_write_token` one written to it; each defaults to `input_token`."""

    input_token: Decimal = Field(ge=0, allow_inf_nan=False)
    output_token: Decimal = Field(ge=0, allow_inf_nan=False)
    cached_input_token: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    cache_write_token: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)

    model_config = ConfigDict(extra="forbid", frozen=True)

    @cached_property
    def exact(self) -> tuple[int, int, int, int, int]:
        """The four prices (input, cached input, cache write, output) as integer numerators
        over one common denominator, worked out once: a charge is then integer arithmetic,
        exact whatever the prices' digits, and several times cheaper than the same sum in
        Decimal."""
        prices = (self.input_token, self.cached_input, self.cache_write, self.output_token)
        ratios = [price.as_integer_ratio() for price in prices]
        denominator = math.lcm(*(d for _, d in ratios))
        i, c, w, o = (n * (denominator // d) for n, d in ratios)
        return (i, c, w, o, denominator)

    @property
    def cached_input(self) -> Decimal:
        return self.input_token if self.cached_input_token is None else self.cached_input_token

    @property
    def cache_write(self) -> Decimal:
        return self.input_token if self.cache_write_token is None else self.cache_write_token

    @property
    def highest_prompt_price(self) -> Decimal:
        """What a prompt token may cost at most, whatever its class (for reservations)."""
        return max(self.input_token, self.cached_input, self.cache_write)

    def public(self) -> dict[str, Any]:
        """As the model lists show it: every price in EUR per 1M tokens, the class prices
        with their defaults applied."""
        return {
            "input_token": float(self.input_token),
            "output_token": float(self.output_token),
            "cached_input_token": float(self.cached_input),
            "cache_write_token": float(self.cache_write),
            "currency": "EUR",
        }

    def charge(self, usage: TokenUsage) -> int:
        """The exact charge in credits of `usage` by token class, rounded up once to a whole
        credit: uncached prompt * input + cached * cached_input + cache-written * cache_write
        + completion (reasoning included) * output."""
        i, c, w, o, denominator = self.exact
        exact = (
            usage.uncached_prompt * i
            + usage.cached_prompt * c
            + usage.cache_write * w
            + usage.completion * o
        )
        return -(-exact // denominator)  # rounded up, in integers

    def credits_for(self, prompt_tokens: int, completion_tokens: int) -> int:
        """The exact charge in credits of plain prompt and completion tokens, rounded up."""
        return self.charge(TokenUsage(prompt_tokens, completion_tokens))
