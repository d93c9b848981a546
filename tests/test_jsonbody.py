"""`check_shape`: depth and number of values bounded before a body is parsed; what is inside
strings (escaped quotes included) does not count; a malformed body is left to the parser."""

from __future__ import annotations

import orjson
import pytest

from tollway.errors import BadRequest, PayloadTooLarge
from tollway.jsonbody import JsonLimits, check_shape, parse_json_body

LIMITS = JsonLimits(max_depth=8, max_values=1000)


def nested(levels: int) -> bytes:
    return b'{"a": ' * (levels - 1) + b"[]" + b"}" * (levels - 1)


def test_nesting_up_to_the_limit_passes_and_one_more_is_400_naming_the_field() -> None:
    check_shape(nested(8), LIMITS)
    with pytest.raises(BadRequest) as caught:
        check_shape(nested(9), LIMITS)
    assert caught.value.param == "a.a.a.a.a.a.a.a"
    assert caught.value.message == (
        "a.a.a.a.a.a.a.a: nested deeper than 8 levels (the limit of a JSON request body)"
    )


def test_array_indexes_are_named() -> None:
    body = b'{"x": [1, 2, {"y": [[[[[[[]]]]]]]}]}'
    with pytest.raises(BadRequest) as caught:
        check_shape(body, LIMITS)
    assert caught.value.param == "x.2.y.0.0.0.0.0"  # the 9th level opens in the 8th


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": [{"b": ["[[[[[[[[[[[[[[[[[[[["]}]}',
        b'{"a": [{"b": ["\\"[[[[[[[[[[[[[[[[[[["]}]}',  # after an escaped quote too
        b'{"a": [{"b": ["]]]]]]]]]]]]]]]]]]]]"]}], "c": ' + nested(5) + b"}",
    ],
)
def test_brackets_inside_strings_do_not_nest(raw: bytes) -> None:
    check_shape(raw, LIMITS)
    parse_json_body(raw)  # and the body is what it seems


def test_a_string_with_brackets_then_real_nesting_is_measured_exactly() -> None:
    raw = b'{"t": "]]]]]]]]]]", "u": ' + nested(8) + b"}"
    with pytest.raises(BadRequest):
        check_shape(raw, LIMITS)  # 9 levels: the closing brackets in "t" must not hide it


def test_values_over_the_limit_are_413_and_separators_in_strings_are_not_values() -> None:
    check_shape(b"[" + b"1," * 990 + b"1]", LIMITS)
    with pytest.raises(PayloadTooLarge) as caught:
        check_shape(b"[" + b"{}," * 1000 + b"{}]", LIMITS)
    assert "more than 1000 JSON values" in caught.value.message
    check_shape(orjson.dumps({"text": ",:[{" * 5000}), LIMITS)


@pytest.mark.parametrize(
    "raw",
    [b'["' + b"[" * 100, b"[" * 100 + b'"', b'{"a": "\\', b"[[[[[[[[[[[[[[[[[[[[[[[[[" + b"x"],
)
def test_malformed_bodies_are_refused_by_the_shape_check_or_the_parser(raw: bytes) -> None:
    try:
        check_shape(raw, LIMITS)
    except BadRequest:
        return  # deep before it was malformed: refused either way
    with pytest.raises(BadRequest):
        parse_json_body(raw)
