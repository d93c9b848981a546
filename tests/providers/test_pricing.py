"""A charge is integer arithmetic over the prices' exact ratios (`Pricing.exact`): it must
equal the exact decimal sum, rounded up once, for any prices and token counts."""

from __future__ import annotations

import random
from decimal import ROUND_CEILING, Context, Decimal, Inexact

import pytest

from tollway.providers.pricing import Pricing
from tollway.providers.usage import TokenUsage


def decimal_charge(pricing: Pricing, usage: TokenUsage) -> int:
    """The charge as the exact decimal sum (a precision no test value reaches; Inexact
    would raise rather than round), rounded up once."""
    exact = Context(prec=400, traps=[Inexact])
    total = Decimal(0)
    for count, price in (
        (usage.uncached_prompt, pricing.input_token),
        (usage.cached_prompt, pricing.cached_input),
        (usage.cache_write, pricing.cache_write),
        (usage.completion, pricing.output_token),
    ):
        total = exact.add(total, exact.multiply(Decimal(count), price))
    return int(total.to_integral_value(rounding=ROUND_CEILING))


def a_price(rng: random.Random) -> Decimal:
    digits = rng.randint(1, 30)
    return Decimal(rng.randrange(10**digits)).scaleb(-rng.randint(0, 40))


def test_a_charge_is_the_exact_sum_rounded_up_once() -> None:
    rng = random.Random(18)
    for _ in range(3000):
        pricing = Pricing(
            input_token=a_price(rng),
            output_token=a_price(rng),
            cached_input_token=a_price(rng) if rng.random() < 0.5 else None,
            cache_write_token=a_price(rng) if rng.random() < 0.5 else None,
        )
        prompt = rng.randrange(10 ** rng.randint(0, 9))
        cached = rng.randint(0, prompt)
        written = rng.randint(0, prompt - cached)
        completion = rng.randrange(10 ** rng.randint(0, 9))
        usage = TokenUsage(prompt, completion, cached, written, rng.randint(0, completion))
        assert pricing.charge(usage) == decimal_charge(pricing, usage), (pricing, usage)


@pytest.mark.parametrize(
    ("price", "tokens", "credits"),
    [
        ("0.15", 1, 1),  # a part of a credit is a whole credit
        ("0.15", 20, 3),
        ("0.15", 100, 15),  # exact: nothing rounded up
        ("0.000000001", 1, 1),
        ("1E+2", 3, 300),  # a positive exponent
        ("0", 10**9, 0),
        ("0.1", 3, 1),  # 0.1 is exact here: 0.3 rounds up to 1, not 0.30000000000000004
        ("0.1", 30, 3),
    ],
)
def test_charges_at_the_edges(price: str, tokens: int, credits: int) -> None:
    pricing = Pricing(input_token=Decimal(price), output_token=Decimal(0))
    assert pricing.charge(TokenUsage(tokens, 0)) == credits
    assert pricing.credits_for(tokens, 0) == credits
