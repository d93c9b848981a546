"""How the registry loader words what is wrong with a registry file: each problem names the
file, the entry (`providers[2] (slug=foo)`) and the field, in the order a reader meets them."""

from __future__ import annotations

from collections.abc import Callable

import yaml

Location = tuple[int | str, ...]  # a pydantic-style location: ("providers", 2, "base_url")
Report = Callable[[Location, str], None]
_IDENTITY_KEYS = ("slug", "id", "provider")


def file_order(problem: tuple[Location, str]) -> tuple[int, int]:
    """Problems in the order a reader meets them: providers, then models, by entry."""
    loc = problem[0]
    index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
    return (0 if loc[0] == "providers" else 1, index)


def is_follow_on(kind: str, loc: Location, raw: object) -> bool:
    """pydantic reports a list whose items failed as also "too short" ("Tuple should have at
    least 1 item after validation, not 0"); that line only repeats the item's own error."""
    if kind != "too_short":
        return False
    node = raw
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and 0 <= item < len(node):
            node = node[item]
        elif isinstance(item, str) and isinstance(node, dict):
            node = node.get(item)
        else:
            return False
    return isinstance(node, list) and len(node) > 0


def problem(source: str, raw: object, loc: Location, message: str) -> str:
    return f"{source}: {describe_location(loc, raw)}: {message}"


def describe_location(loc: Location, raw: object) -> str:
    """A pydantic-style location as a reader finds it: `providers[2] (slug=foo).base_url`."""
    text = ""
    node = raw
    for item in loc:
        if isinstance(item, int):
            text += f"[{item}]"
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
            if isinstance(node, dict):
                name = next((k for k in _IDENTITY_KEYS if isinstance(node.get(k), str)), None)
                if name is not None:
                    text += f" ({name}={node[name]})"
        else:
            text += f".{item}" if text else str(item)
            node = node.get(item) if isinstance(node, dict) else None
    return text or "(top level)"


def yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    return str(error)
