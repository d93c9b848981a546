"""Keyset paging shared by the request log and the audit log: a page size from the query
string and an opaque cursor (the time and id of the last row seen)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

import orjson

from tollway.errors import BadRequest

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest("limit: must be a whole number", param="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit: must be between 1 and {MAX_LIMIT}", param="limit")
    return limit


def text_filter(name: str, value: str | None, *, max_length: int | None = None) -> str | None:
    """A text filter as given (empty: none). A NUL, which no stored value holds and which
    PostgreSQL refuses even to compare, is a 400 naming the parameter, as is a value longer
    than `max_length`."""
    if not value:
        return None
    if "\x00" in value:
        raise BadRequest(f"{name}: must not contain a NUL character", param=name)
    if max_length is not None and len(value) > max_length:
        raise BadRequest(f"{name}: at most {max_length} characters", param=name)
    return value


def encode_cursor(created_at_ms: int, row_id: str) -> str:
    """The cursor after a row: its time and its id (keyset paging, newest first)."""
    raw = orjson.dumps([created_at_ms, row_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError):
        value = None
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], int)
        and not isinstance(value[0], bool)
        and -(2**63) <= value[0] < 2**63  # a 64-bit column's range
        and isinstance(value[1], str)
        and "\x00" not in value[1]  # no id holds one; PostgreSQL refuses to compare it
    ):
        return value[0], value[1]
    raise BadRequest("cursor: not a cursor this API returned", param="cursor")


def cut(
    rows: Sequence[T], limit: int, key: Callable[[T], tuple[int, str]]
) -> tuple[list[T], str | None]:
    """One page of `rows` (read with `limit + 1`: one more tells whether there is a next
    page) and the cursor after its last row, or None on the last page."""
    page = list(rows[:limit])
    if len(rows) <= limit:
        return page, None
    return page, encode_cursor(*key(page[-1]))
