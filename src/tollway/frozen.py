"""`@frozen`: Tollway's immutable records — frozen to the type checker, cheap to build.

A `@dataclass(frozen=True)` assigns each field through `object.__setattr__` in its
`__init__`: ~65 ns a field on CPython 3.11, six times a plain slot's. A warm chat request builds ~17
records (~180 fields: the ranked candidates, the reservation, the usage, the request log's
record), ~12 µs of CPU for nothing but the assignment (bench/README.md, "Records").

So a record is declared frozen where it is checked, and built as a plain slotted dataclass:
`dataclass_transform(frozen_default=True)` makes mypy (`dev.py check`, in CI) refuse any
assignment to a field, as it does for `frozen=True`; at run time the class is
`dataclass(slots=True, unsafe_hash=True)`, which hashes and compares by value as a frozen one
does, and, with its slots, still takes no attribute it does not declare. Change a record with
`dataclasses.replace`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def frozen(cls: type[T]) -> type[T]:
    """An immutable record: see the module's text."""
    return dataclass(slots=True, unsafe_hash=True)(cls)
