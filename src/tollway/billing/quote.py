"""What a request may cost: its worst case (every granted completion token) and its minimum
(the prompt plus one token), in whole credits, computed exactly: the prices are read as
integer fractions over one common denominator, so every sum is integer arithmetic (exact for
any number of digits, as the charge is: `providers/pricing.py`)."""

from __future__ import annotations

from decimal import Decimal
from math import lcm

from tollway.frozen import frozen


@frozen
class Quote:
    """What a request costs at most, and at least (its prompt plus one completion token).
    `prompt` and `output_price` are multiples of 1/`denominator` credit."""

    prompt: int  # the whole prompt's price, times `denominator`
    output_price: int  # one completion token's price, times `denominator`
    denominator: int
    max_tokens: int

    @classmethod
    def of(
        cls, input_price: Decimal, prompt_tokens: int, output_price: Decimal, max_tokens: int
    ) -> Quote:
        (i, di), (o, do) = input_price.as_integer_ratio(), output_price.as_integer_ratio()
        denominator = lcm(di, do)
        return cls(
            i * (denominator // di) * prompt_tokens,
            o * (denominator // do),
            denominator,
            max_tokens,
        )

    def cost(self, completion_tokens: int) -> int:
        """In whole credits, rounded up."""
        return -(-(self.prompt + self.output_price * completion_tokens) // self.denominator)

    @property
    def full(self) -> int:
        return self.cost(self.max_tokens)

    @property
    def minimum(self) -> int:
        if self.max_tokens == 0 or self.output_price == 0:
            return self.full
        return self.cost(1)

    def tokens_within(self, room: int) -> int:
        """The most completion tokens whose worst-case cost fits in `room` credits (below
        zero when not even the prompt fits)."""
        if self.output_price == 0:  # completion tokens are free: room limits none of them
            return self.max_tokens
        # cost(n) <= room  <=>  prompt + output_price * n <= room * denominator (room whole)
        return min(self.max_tokens, (room * self.denominator - self.prompt) // self.output_price)
