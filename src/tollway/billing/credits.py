"""Integer credits: 1 EUR = 1,000,000 credits. No floats anywhere in accounting."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

CREDITS_PER_EUR = 1_000_000


def eur_to_credits(amount: Decimal) -> int:
    """EUR → credits, rounded up to a whole credit."""
    return int((amount * CREDITS_PER_EUR).to_integral_value(rounding=ROUND_CEILING))


def credits_to_eur(credits: int) -> Decimal:
    """Exact: 999874 credits → Decimal('0.999874')."""
    return Decimal(credits).scaleb(-6)


def credits_to_json_number(credits: int) -> float:
    """EUR as a JSON number. A correctly rounded quotient prints (shortest repr) as the exact
    decimal for every amount below 10^9 EUR, so 999874 credits prints as 0.999874."""
    return credits / CREDITS_PER_EUR
