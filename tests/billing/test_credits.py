from __future__ import annotations

import pytest

from tollway.billing.credits import parse_eur
from tollway.errors import BadRequest


@pytest.mark.parametrize(
    ("text", "credits"),
    [
        ("1", 1_000_000),
        ("12.5", 12_500_000),
        ("0.000001", 1),
        ("007.10", 7_100_000),
        (" 3 ", 3_000_000),
        ("999999999.999999", 999_999_999_999_999),
    ],
)
def test_plain_amounts_are_exact(text: str, credits: int) -> None:
    assert parse_eur(text) == credits
    assert parse_eur(text, signed=True) == credits


@pytest.mark.parametrize(
    "text",
    [
        "1e3",
        "1E3",
        "1e-3",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1,000",
        "1,5",
        "1_000",
        "0x10",
        "1.0000001",
        ".5",
        "5.",
        "",
        " ",
        "abc",
        "1 000",
        "١٢",
        "٣",
        "0",
        "0.000000",
        "-1",
        "+1",
        "1000000000",
        "--1",
        "1.2.3",
        "€5",
        "5€",
    ],
)
def test_anything_else_is_refused_for_a_top_up(text: str) -> None:
    with pytest.raises(BadRequest, match="amount must be"):
        parse_eur(text)


def test_signed_amounts_for_adjustments() -> None:
    assert parse_eur("-2.50", signed=True) == -2_500_000
    assert parse_eur("+0.5", signed=True) == 500_000
    for text in ("0", "-0", "-0.000000", "-1e3", "-nan", "-1000000000", "- 1"):
        with pytest.raises(BadRequest, match="amount must be"):
            parse_eur(text, signed=True)


def test_the_message_is_bounded() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_eur("9" * 10_000 + "x")
    assert len(caught.value.message) < 200
