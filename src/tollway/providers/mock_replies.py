"""The pure half of the mock provider: what it answers, given a request body.

Kept apart from the ASGI plumbing in `tollway.providers.mock` so the reply rules (words,
hooks, error shapes) read on their own and stay a pure function of
the request.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.providers.tokens import content_text

DEFAULT_REPLY_TOKENS = 16
# 31 words: a prime, so any step from the hash walks through all of them.
_WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "amber",
    "basalt", "cedar", "dune", "ember",
)  # fmt: skip
_HOOK = re.compile(r"mock-(error|cut|latency)-(\d+)")


@dataclass(frozen=True)
class Hooks:
    """Behaviour requested through the model name (see the module docstring)."""

    error_status: int | None = None
    cut_after: int | None = None
    latency_ms: float = 0
    omit_usage: bool = False


class MockRejection(Exception):
    """An error answer of the mock, rendered in the OpenAI error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_hooks(model: str) -> Hooks:
    if "mock-" not in model:
        return Hooks()
    values: dict[str, int] = {kind: int(number) for kind, number in _HOOK.findall(model)}
    status = values.get("error")
    return Hooks(
        error_status=status if status is not None and 400 <= status <= 599 else None,
        cut_after=values.get("cut"),
        latency_ms=float(values.get("latency", 0)),
        omit_usage="mock-no-usage" in model,
    )


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def last_message_text(messages: list[Any]) -> str:
    last = messages[-1] if messages else None
    return content_text(last.get("content")) if isinstance(last, dict) else ""


def words_for(text: str, length: int, variant: int = 0) -> tuple[str, ...]:
    """`length` words from the fixed list, starting and stepping by a hash of `text`
    (and of `variant`, which tells apart the choices of one request)."""
    data = text.encode() if variant == 0 else f"{text}\x00{variant}".encode()
    seed = _hash(data)
    start, step = seed % len(_WORDS), 1 + (seed >> 16) % (len(_WORDS) - 1)
    return tuple(_WORDS[(start + i * step) % len(_WORDS)] for i in range(length))


def stable_hash(data: bytes) -> int:
    return _hash(data)


def embed(text: str, dim: int) -> list[float]:
    """A unit vector derived from a hash of the text."""
    raw = hashlib.shake_256(text.encode()).digest(2 * dim)
    values = [v / 32768 for v in struct.unpack(f">{dim}h", raw)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


def error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error")


def error_body(status: int, message: str) -> bytes:
    error = {"message": message, "type": error_type(status), "code": f"mock_{status}"}
    return orjson.dumps({"error": {**error, "param": None}})


def required_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise MockRejection(400, "'model' is required")
    return model


def requested_max_tokens(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MockRejection(400, "'max_tokens' must be a positive integer")
    return value


def embedding_inputs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return list(value)
    raise MockRejection(400, "'input' must be a string or a non-empty list of strings")
