"""Key material: 256 random bits behind a recognisable prefix; only the digest is stored."""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "tw-"
# Names of keys, users and projects. The text form is the JSON Schema `pattern` (where `$` is
# the end of the text); Python's `$` would also match before a final newline, hence fullmatch.
NAME_REGEX = r"^[A-Za-z0-9._-]{1,64}$"
NAME_PATTERN = re.compile(NAME_REGEX.removeprefix("^").removesuffix("$"))


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
