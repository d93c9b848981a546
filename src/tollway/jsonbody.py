"""Request bodies are JSON in the strict sense (RFC 8259, orjson's parser): every string valid
Unicode and every number finite. A lone UTF-16 surrogate (``"\\ud800"``) has no UTF-8 form, so
it could be neither stored nor forwarded upstream; ``1e400`` is no number a client meant. Both
are a 400 that names the field holding them, found by a lenient second parse that only runs
when the strict one has already refused the body.

Before any parse, `check_shape` bounds what parsing may cost: a body of 32 MiB of ``{}, `` is
8 million Python objects (~940 MB) and seconds of a blocked event loop, and one nested a
thousand levels deep overflows a recursive parser or serializer. A body with more JSON values
than `JsonLimits.max_values` is a 413, one nested deeper than `JsonLimits.max_depth` a 400
naming the field where it crosses the limit, both before anything is built from it. The
common body is cleared by two byte counts done in C; only a body with many brackets or
separators is scanned token by token, and that scan stops at the limit.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from decimal import Decimal
from typing import Any

import orjson

from tollway.errors import BadRequest, PayloadTooLarge, excerpt
from tollway.frozen import frozen


@frozen
class JsonLimits:
    """How deep a request body may nest and how many values (object keys included) it may
    hold (settings `max_json_depth`, `max_json_values`)."""

    max_depth: int = 64
    max_values: int = 200_000


# Each value (and each object key) but the first follows one of `[` `{` `,` `:`, so their
# number bounds the values. `_TOKENS` finds them (and brackets, and strings' quotes).
_TOKENS = re.compile(rb'[\[\]{},:"]')
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"')
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_STEP = tuple(1 if byte in b"[{" else -1 for byte in range(256))
# The rest of a string after its opening quote; possessive, so a string that never closes
# costs one pass, not one per quote.
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+"')
_QUOTE, _OPEN_ARRAY, _OPEN_OBJECT, _COMMA, _COLON = b'"[{,:'
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")


def check_shape(raw: bytes, limits: JsonLimits) -> None:
    """Refuse, before it is parsed, a body that nests deeper or holds more values than
    `limits` allows: 400 naming the field for depth, 413 for the number of values. A
    malformed body passes (the parser names what is wrong)."""
    openers = raw.count(b"[") + raw.count(b"{")
    if openers + raw.count(b",") + raw.count(b":") >= limits.max_values:
        _scan(raw, limits)  # token by token, up to the limit
    elif openers > limits.max_depth and _depth(raw) > limits.max_depth:
        _scan(raw, limits)  # to name where
    # else it cannot cross either limit


def _depth(raw: bytes) -> int:
    """How deep `raw` nests, in C: strings dropped, then brackets only, then a running sum
    (for a body with fewer values than the limit, so with few strings)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _scan(raw: bytes, limits: JsonLimits) -> None:
    """Tokens outside strings, counted until a limit is crossed or the body ends."""
    search, string_rest = _TOKENS.search, _STRING_REST.match
    depth, values, pos = 0, 1, 0
    max_depth, max_values = limits.max_depth, limits.max_values
    while (match := search(raw, pos)) is not None:
        token = raw[match.start()]
        if token == _QUOTE:
            end = string_rest(raw, match.end())
            if end is None:
                return  # a string that never closes: malformed, the parser says so
            pos = end.end()
            continue
        pos = match.end()
        if token in _OPENERS:
            depth += 1
            if depth > max_depth:
                where = _path_at(raw, pos)
                raise BadRequest(
                    f"{where}: nested deeper than {max_depth} levels (the limit of a JSON "
                    "request body)",
                    param=where,
                )
        elif token in _CLOSERS:
            depth -= 1
            continue
        values += 1
        if values > max_values:
            raise PayloadTooLarge(
                f"request body holds more than {max_values} JSON values and keys "
                "(the limit of a JSON request body)"
            )


def _path_at(raw: bytes, stop: int) -> str:
    """The dotted path of the container that opens at byte `stop` (a refusal's name)."""
    search, string_rest = _TOKENS.search, _STRING_REST.match
    stack: list[list[Any]] = []  # [is_array, index or key] per open container
    last = b""
    pos = 0
    while (match := search(raw, pos)) is not None and match.start() < stop:
        token = raw[match.start()]
        if token == _QUOTE:
            end = string_rest(raw, match.end())
            if end is None:
                break
            last = raw[match.end() : end.end() - 1]
            pos = end.end()
            continue
        pos = match.end()
        if token == _OPEN_ARRAY:
            stack.append([True, 0])
        elif token == _OPEN_OBJECT:
            stack.append([False, None])
        elif token in _CLOSERS and stack:
            stack.pop()
        elif token == _COMMA and stack and stack[-1][0]:
            stack[-1][1] += 1
        elif token == _COLON and stack:
            stack[-1][1] = last.decode("utf-8", "replace")
    return _dotted(tuple(str(key) for _, key in stack[:-1] if key is not None))


def parse_json_body(raw: bytes) -> Any:
    """The body as Python values, or a 400 naming what is wrong and where."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        where, why = _locate(raw)
        if where is None:
            raise BadRequest(f"malformed JSON body: {excerpt(exc, 200)}") from exc
        raise BadRequest(f"{where}: {why}", param=where) from exc


def parse_json_body_exact(raw: bytes) -> Any:
    """Like `parse_json_body`, with every fraction a `Decimal` (a budget limit of
    1000000000000.000001 EUR is not silently 10^12): for bodies that carry money."""
    parse_json_body(raw)
    return json.loads(raw, parse_float=Decimal)


def _locate(raw: bytes) -> tuple[str | None, str]:
    try:
        lenient = json.loads(raw)  # accepts lone surrogates, NaN and numbers beyond a double
    except (ValueError, RecursionError):
        return None, ""
    stack: list[tuple[tuple[str, ...], Any]] = [((), lenient)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str) and not _encodable(value):
            return _dotted(path), "not valid Unicode (a lone UTF-16 surrogate escape)"
        if isinstance(value, float) and not math.isfinite(value):
            return _dotted(path), "not a finite number (out of range)"
        if isinstance(value, dict):
            for key in value:
                if not _encodable(key):
                    return _dotted(path), "a field name is not valid Unicode (a lone surrogate)"
            stack.extend(((*path, key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*path, str(i)), item) for i, item in reversed(list(enumerate(value))))
    return None, ""


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _dotted(path: tuple[str, ...]) -> str:
    return excerpt(".".join(path), 120) if path else "body"
