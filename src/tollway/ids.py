"""Identifiers: random, opaque, URL-safe."""

from __future__ import annotations

import itertools
import secrets


def new_id() -> str:
    """A 24-hex-digit id, the shape of the cortecs.ai (MongoDB) identifiers."""
    return secrets.token_hex(12)


class RequestIds:
    """Request ids of one process: its random instance id + a counter (unique across
    processes and restarts, and cheaper than a uuid4 per request)."""

    def __init__(self, instance_id: str) -> None:
        self._prefix = instance_id + "-"
        self._numbers = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._numbers):x}"
