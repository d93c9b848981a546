"""What an upstream says passes through one `Redactor` at the upstream seam
(`providers/upstream.py`) before a client or a log line sees any of it.

Two rules, because they cost differently and protect different things:

- **The gateway's own secrets**, the exact values of every provider key the registry holds
  (and their JSON-escaped spellings), are removed from *everything* an upstream sends: error
  bodies, answers and every streamed event. A provider that echoes the request's headers into
  its reply would otherwise hand our key to the client. Looking for a handful of fixed byte
  strings is a `memmem` per secret, so every streamed event can afford it.
- **Credential-shaped text** (a bearer token, an `sk-…`/`tw-…` key, an `api_key: …` value) is
  removed from error bodies and log lines only: in a model's answer the same shapes are
  legitimate content (code that sets an API key).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_MASK_BYTES = MASK.encode()
# Shorter values are not treated as secrets: masking every "abc" of an answer would mangle it,
# and no real provider key is this short.
MIN_SECRET_CHARS = 8

_SHAPES = (
    r"(?i)(bearer\s+)[^\s\"',;]+"
    r"|\b(?:sk|tw)-[A-Za-z0-9_\-]{8,}"
    r"|((?:x-)?api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"
)
_SHAPES_TEXT = re.compile(_SHAPES)
_SHAPES_BYTES = re.compile(_SHAPES.encode())


def _spellings(secret: str) -> set[str]:
    """The secret as sent, and as a JSON encoder may have escaped it in an echo."""
    escaped = secret.replace("\\", "\\\\").replace('"', '\\"').replace("/", "\\/")
    return {secret, escaped}


class Redactor:
    """Removes the gateway's secrets (always) and credential shapes (from error text)."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        values = {
            spelling
            for secret in secrets
            if secret is not None and len(secret) >= MIN_SECRET_CHARS
            for spelling in _spellings(secret)
        }
        # Longest first, so a secret containing another is masked whole.
        ordered = sorted(values, key=len, reverse=True)
        self._secret_bytes = tuple(value.encode() for value in ordered)
        self._secret_text = tuple(ordered)

    # -- everything an upstream sends: secrets only ------------------------------------------

    def secrets_out(self, data: bytes) -> bytes:
        """`data` with every secret value masked (the common case: returned as is)."""
        for secret in self._secret_bytes:
            if secret in data:
                data = data.replace(secret, _MASK_BYTES)
        return data

    # -- error bodies and log text: secrets and credential shapes ---------------------------

    def error_body(self, body: bytes) -> bytes:
        masked = self.secrets_out(body)
        return _SHAPES_BYTES.sub(lambda m: (m.group(1) or m.group(2) or b"") + _MASK_BYTES, masked)

    def text(self, text: str) -> str:
        for secret in self._secret_text:
            if secret in text:
                text = text.replace(secret, MASK)
        return _SHAPES_TEXT.sub(lambda m: (m.group(1) or m.group(2) or "") + MASK, text)
