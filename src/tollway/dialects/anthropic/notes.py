"""What translating one Anthropic request did with fields chat has no field for, noted as it
goes and frozen into the request's `Translation` (`observe/record.py`) at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tollway.observe.record import Translation


@dataclass(slots=True)
class Notes:
    translated: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def translate(self, name: str) -> None:
        self.translated.append(name)

    def drop(self, name: str) -> None:
        self.dropped.append(name)

    def hints(self, item: dict[str, Any], *names: str) -> None:
        """Hints a chat upstream has no use for, on any block or tool (`cache_control`...):
        accepted, not forwarded, named once however often they occur."""
        for name in ("cache_control", *names):
            if item.get(name) is not None:
                self.dropped.append(name)

    def frozen(self) -> Translation:
        return Translation.of(self.translated, self.dropped)
