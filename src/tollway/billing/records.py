"""The meter's records: who pays for a request, what it reserved, and what it used. A leaf
module: the meter (`meter.py`), how a reservation closes (`closing.py`), the retrier of
refused settlements (`settlement.py`) and the gateway all import these, and they import
nothing of billing — so billing has no import cycle."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, get_args

from tollway.frozen import frozen
from tollway.providers.pricing import Pricing
from tollway.providers.usage import TokenUsage
from tollway.store.budgets import WindowKey

# Every value the meter writes into `usage_events.status` and `usage_events.usage_source`.
# The column sizes are tested against these tuples on both backends (a value the schema
# cannot hold would make every such settlement fail on PostgreSQL only).
UsageStatus = Literal["success", "error", "client_disconnected", "aborted"]
UsageSource = Literal["upstream", "counted", "none"]
USAGE_STATUSES: tuple[str, ...] = get_args(UsageStatus)
USAGE_SOURCES: tuple[str, ...] = get_args(UsageSource)


@frozen
class Payer:
    request_id: str
    user_id: str
    project_id: str
    key_id: int
    key_name: str


@frozen
class ReserveRequest:
    payer: Payer
    input_price: Decimal
    output_price: Decimal
    prompt_tokens: int
    max_tokens: int


@frozen
class Reservation:
    request_id: str
    payer: Payer
    amount_credits: int
    max_tokens: int
    lowered: bool
    windows: tuple[WindowKey, ...] = ()
    lease: str | None = None  # reserved in memory against this credit lease (billing/leases)
    # How it was reserved: "lease" (in memory at once), "lease_after_draw" (it waited for the
    # lease to be drawn or topped up: a database transaction on its path), "database".
    path: str = "database"


@frozen
class UsageRecord:
    endpoint: str
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    pricing: Pricing
    latency_ms: int
    status: UsageStatus
    usage_source: UsageSource
    # Token classes (docs/billing.md): parts of `prompt_tokens` / `completion_tokens`.
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def of(cls, tokens: TokenUsage, **fields: Any) -> UsageRecord:
        return cls(
            prompt_tokens=tokens.prompt,
            completion_tokens=tokens.completion,
            cached_prompt_tokens=tokens.cached_prompt,
            cache_write_tokens=tokens.cache_write,
            reasoning_tokens=tokens.reasoning,
            **fields,
        )

    @property
    def tokens(self) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_prompt_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
        )

    @property
    def cost(self) -> int:
        """The exact charge of this usage by token class, in whole credits (rounded up)."""
        return self.pricing.charge(self.tokens)
