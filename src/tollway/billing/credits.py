"""Integer credits: 1 EUR = 1,000,000 credits. No floats anywhere in accounting."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal

from tollway.errors import BadRequest

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


# A plain decimal number: digits, optionally a point and 1-6 digits (one credit = 0.000001
# EUR). No exponent ("1e3" once topped up 1,000 EUR), no nan/inf, no thousands separators.
_PLAIN_EUR = re.compile(r"[+-]?[0-9]+(?:\.[0-9]{1,6})?")
# Below 10^9 EUR every amount prints exactly as a JSON number (see credits_to_json_number).
MAX_AMOUNT_CREDITS = 10**9 * CREDITS_PER_EUR - 1


def parse_eur(text: str, *, signed: bool = False) -> int:
    """A typed-in EUR amount → credits, exactly, or BadRequest saying what is accepted.

    ``signed=False`` accepts positive amounts only; ``signed=True`` any non-zero amount."""
    value = text.strip()
    shape = "a non-zero number of EUR" if signed else "a positive number of EUR"
    example = "-2.50" if signed else "12.50"
    if not _PLAIN_EUR.fullmatch(value) or (not signed and value[0] in "+-"):
        raise BadRequest(
            f"amount must be {shape} written as plain digits with at most 6 decimals "
            f"(e.g. {example}), got {text[:40]!r}"
        )
    credits = int(Decimal(value).scaleb(6))
    if credits == 0 or (not signed and credits < 0):
        raise BadRequest(f"amount must be {shape}, got {text[:40]!r}")
    if abs(credits) > MAX_AMOUNT_CREDITS:
        raise BadRequest(f"amount must be below 1,000,000,000 EUR, got {text[:40]!r}")
    return credits
