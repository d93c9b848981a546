"""Shared field types of the Management API's bodies. Each stored or looked-up string has the
shape of what it names, stated as a JSON Schema pattern: the OpenAPI document shows it, and a
NUL, a newline or a 10 MB string is a 400 naming the field before any query sees it
(PostgreSQL cannot store a NUL at all)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema

from tollway.keys.secrets import NAME_REGEX

KeyName = Annotated[
    str,
    Field(pattern=NAME_REGEX, description="1-64 characters of A-Z a-z 0-9 . _ -"),
]
ObjectId = Annotated[
    str,
    Field(pattern=r"^[0-9a-f]{24}$", description="A 24-hex-digit id."),
]

# A budget limit in EUR. Up to 10^12 EUR (10^18 credits) fits the 64-bit credit columns with
# room for what is spent and reserved against it.
MAX_LIMIT_EUR = Decimal(10**12)


def _json_number(value: object) -> object:
    """Amounts are JSON numbers: a string ("1") or a boolean is refused, not converted (the
    body's fractions are parsed exactly, so a string buys no precision)."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON number, not a string or a boolean")
    return value


EurAmount = Annotated[
    Decimal,
    BeforeValidator(_json_number),
    Field(
        ge=0,
        le=MAX_LIMIT_EUR,
        allow_inf_nan=False,
        description="EUR, at most 6 decimal places (1 credit = 0.000001 EUR), at most 10^12; "
        "a JSON number.",
    ),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 10**12}),
]
