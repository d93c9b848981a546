"""Identifiers: random, opaque, URL-safe."""

from __future__ import annotations

import secrets


def new_id() -> str:
    """A 24-hex-digit id, the shape of the cortecs.ai (MongoDB) identifiers."""
    return secrets.token_hex(12)
