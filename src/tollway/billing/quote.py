"""What a request may cost: its worst case (every granted completion token) and its minimum
(the prompt plus one token), in whole credits, computed exactly in `Decimal`."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal

from tollway.frozen import frozen

PRECISION = 96  # digits: enough for any token count times any registry price, exactly


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


@frozen
class Quote:
    """What a request costs at most, and at least (its prompt plus one completion token)."""

    prompt: Decimal
    output_price: Decimal
    max_tokens: int

    @classmethod
    def of(
        cls, input_price: Decimal, prompt_tokens: int, output_price: Decimal, max_tokens: int
    ) -> Quote:
        return cls(
            Context(prec=PRECISION).multiply(input_price, prompt_tokens), output_price, max_tokens
        )

    def cost(self, completion_tokens: int) -> int:
        exact = Context(prec=PRECISION)
        return _ceil(exact.add(self.prompt, exact.multiply(self.output_price, completion_tokens)))

    @property
    def full(self) -> int:
        return self.cost(self.max_tokens)

    @property
    def minimum(self) -> int:
        if self.max_tokens == 0 or self.output_price == 0:
            return self.full
        return self.cost(1)

    def tokens_within(self, room: int) -> int:
        """The most completion tokens whose worst-case cost fits in `room` credits."""
        exact = Context(prec=PRECISION)
        quotient = exact.divide(exact.subtract(Decimal(room), self.prompt), self.output_price)
        granted = min(self.max_tokens, int(quotient.to_integral_value(rounding=ROUND_FLOOR)))
        while granted > 1 and self.cost(granted) > room:  # the division may round up
            granted -= 1
        return granted
