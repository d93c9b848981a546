"""Request bodies are JSON in the strict sense (RFC 8259, orjson's parser): every string valid
Unicode and every number finite. A lone UTF-16 surrogate (``"\\ud800"``) has no UTF-8 form, so
it could be neither stored nor forwarded upstream; ``1e400`` is no number a client meant. Both
are a 400 that names the field holding them, found by a lenient second parse that only runs
when the strict one has already refused the body."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import orjson

from tollway.errors import BadRequest, excerpt


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
