"""`rounded`, the cheap rounding of the numbers a routing trace shows."""

from __future__ import annotations

import math
import random

from tollway.observe.record import rounded


def test_rounded_agrees_with_round_but_on_binary_halves() -> None:
    rng = random.Random(3)
    for _ in range(20000):
        value = rng.uniform(0, 10 ** rng.randint(0, 7))
        for places in (3, 6, 9):
            if value * 10**places >= 2**40:  # the last places are float noise up there
                continue
            expected, got = round(value, places), rounded(value, 10.0**places)
            # Equal, or one unit of the last place apart where round() sees the binary value
            # just below a half.
            assert abs(got - expected) <= 10.0**-places + 4 * math.ulp(value), (value, places)
            assert got == expected or abs(value * 10**places % 1 - 0.5) < 1e-3, (value, places)


def test_rounded_values_and_non_finite_ones() -> None:
    assert rounded(812.34567, 1e3) == 812.346
    assert rounded(0.0012345678912, 1e9) == 0.001234568
    assert rounded(2.5, 1.0) == 3.0  # half up (round() would give the even 2)
    assert rounded(0.0, 1e6) == 0.0
    assert rounded(math.inf, 1e3) == math.inf
    assert math.isnan(rounded(math.nan, 1e3))
