"""A quote is integer arithmetic over the prices' exact ratios: its costs and the tokens a
room allows must equal the exact decimal computation, for any prices and counts."""

from __future__ import annotations

import math
import random
from decimal import ROUND_CEILING, Context, Decimal, Inexact
from fractions import Fraction

from tollway.billing.quote import Quote

EXACT = Context(prec=400, traps=[Inexact])


def decimal_cost(input_price: Decimal, prompt: int, output_price: Decimal, n: int) -> int:
    total = EXACT.add(EXACT.multiply(input_price, prompt), EXACT.multiply(output_price, n))
    return int(total.to_integral_value(rounding=ROUND_CEILING))


def a_price(rng: random.Random) -> Decimal:
    if rng.random() < 0.05:
        return Decimal(0)
    return Decimal(rng.randrange(1, 10 ** rng.randint(1, 20))).scaleb(-rng.randint(0, 30))


def test_costs_and_the_tokens_a_room_allows_are_exact() -> None:
    rng = random.Random(18)
    for _ in range(3000):
        input_price, output_price = a_price(rng), a_price(rng)
        prompt, max_tokens = rng.randrange(10 ** rng.randint(0, 7)), rng.randint(0, 10**6)
        quote = Quote.of(input_price, prompt, output_price, max_tokens)
        n = rng.randint(0, max_tokens)
        assert quote.cost(n) == decimal_cost(input_price, prompt, output_price, n)
        assert quote.full == decimal_cost(input_price, prompt, output_price, max_tokens)
        room = rng.randint(0, max(quote.full, 1))
        granted = quote.tokens_within(room)
        if output_price == 0:
            assert granted == max_tokens
            continue
        # The most tokens whose cost fits: one more would not (or the cap is reached).
        prompt_cost = Fraction(input_price) * prompt
        assert granted == min(max_tokens, math.floor((room - prompt_cost) / Fraction(output_price)))
        if granted >= 0:
            assert quote.cost(granted) <= room
            assert granted == max_tokens or quote.cost(granted + 1) > room


def test_minimum_is_the_prompt_and_one_token() -> None:
    quote = Quote.of(Decimal("0.15"), 1000, Decimal("0.6"), 256)
    assert (quote.cost(0), quote.minimum, quote.full) == (150, 151, 304)  # 150 + 153.6
    assert quote.tokens_within(200) == 83  # 150 + 0.6 x 83 = 199.8; 84 would be 200.4
    assert Quote.of(Decimal("0.15"), 1000, Decimal(0), 256).minimum == 150
