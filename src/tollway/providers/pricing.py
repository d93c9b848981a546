"""An endpoint's prices (registry `pricing`) and the exact charge of a request's tokens by
class (docs/billing.md, token classes)."""

from __future__ import annotations

from decimal import ROUND_CEILING, Context, Decimal, Inexact, InvalidOperation
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
        # Enough precision to be exact; Inexact would trap rather than round silently.
        exact = Context(prec=96, traps=[Inexact, InvalidOperation])
        total = exact.add(
            exact.multiply(Decimal(usage.uncached_prompt), self.input_token),
            exact.multiply(Decimal(usage.completion), self.output_token),
        )
        if usage.cached_prompt:  # the classes cost nothing to charge when there are none
            total = exact.add(
                total, exact.multiply(Decimal(usage.cached_prompt), self.cached_input)
            )
        if usage.cache_write:
            total = exact.add(total, exact.multiply(Decimal(usage.cache_write), self.cache_write))
        return int(total.to_integral_value(rounding=ROUND_CEILING))

    def credits_for(self, prompt_tokens: int, completion_tokens: int) -> int:
        """The exact charge in credits of plain prompt and completion tokens, rounded up."""
        return self.charge(TokenUsage(prompt_tokens, completion_tokens))
