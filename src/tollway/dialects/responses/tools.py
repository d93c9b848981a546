"""Responses tools → chat functions, and a table to name the calls back.

- `function` → a chat function (`strict` forwarded only when true);
- `namespace` (Codex groups its sub-agent and MCP tools this way) → one chat function per
  member, named `<namespace>__<name>` (`<namespace><name>` when the namespace already ends in
  `_`); a call comes back as a `function_call` with `namespace` and `name` apart again;
- `custom` (freeform text input, e.g. Codex's `apply_patch`) → a chat function with one string
  argument `input` (its grammar, if any, appended to the description); a call comes back as a
  `custom_tool_call` with that `input`;
- `web_search*` → dropped and named in the translation: a chat upstream cannot search, and
  the model answers without it (Codex offers it on every request);
- every other built-in tool (`file_search`, `code_interpreter`, `computer_use_preview`,
  `image_generation`, `mcp`, `local_shell`, `tool_search`, …) → a 400 naming `tools.N.type`:
  they would run on OpenAI's side, and answering without them answers another question.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any

import orjson

from tollway.errors import BadRequest, excerpt
from tollway.frozen import frozen

CUSTOM_INPUT = "input"  # the one argument of a custom tool's chat function
_CUSTOM_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {CUSTOM_INPUT: {"type": "string"}},
    "required": [CUSTOM_INPUT],
    "additionalProperties": False,
}
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def is_web_search(kind: str) -> bool:
    """`web_search`, `web_search_preview` and their dated versions."""
    return kind.startswith("web_search")


@frozen
class ToolName:
    """How the client knows a chat function: its name, namespace, and whether it is custom."""

    name: str
    namespace: str | None = None
    custom: bool = False


def chat_name(name: str, namespace: str | None) -> str:
    if not namespace:
        return name
    return f"{namespace}{name}" if namespace.endswith("_") else f"{namespace}__{name}"


@frozen
class Tools:
    """The request's tools as chat functions, and how each chat name maps back."""

    functions: tuple[dict[str, Any], ...] = ()
    names: Mapping[str, ToolName] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()  # e.g. "tools.8 (web_search)"

    def of(self, name: object) -> ToolName:
        """The client's name of a chat function (a function unknown to the table is plain)."""
        text = name if isinstance(name, str) else ""
        return self.names.get(text) or ToolName(text)


def parse_tools(value: object) -> Tools:
    if value is None:
        return Tools()
    if not isinstance(value, list):
        raise BadRequest("tools: must be a list", param="tools")
    functions: list[dict[str, Any]] = []
    names: dict[str, ToolName] = {}
    dropped: list[str] = []
    for i, tool in enumerate(value):
        where = f"tools.{i}"
        kind = _kind(tool, where)
        if kind == "function":
            _add(functions, names, _function(tool, where, None), ToolName(tool["name"]), where)
        elif kind == "custom":
            function = _custom(tool, where)
            _add(functions, names, function, ToolName(tool["name"], custom=True), where)
        elif kind == "namespace":
            _namespace(tool, where, functions, names)
        elif is_web_search(kind):
            dropped.append(f"{where} ({excerpt(kind, 40)})")
        else:
            raise BadRequest(
                f"{where}.type: built-in tool '{excerpt(kind)}' cannot be run by this gateway's"
                " upstreams; only function, custom and namespace tools are supported",
                param=f"{where}.type",
            )
    return Tools(tuple(functions), names, tuple(dropped))


def _kind(tool: object, where: str) -> str:
    if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
        raise BadRequest(f"{where}: must be a tool object with a 'type'", param=where)
    return str(tool["type"])


def _name(tool: dict[str, Any], where: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{where}.name: required, a non-empty string", param=f"{where}.name")
    return name


def _description(tool: dict[str, Any], where: str) -> str | None:
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise BadRequest(f"{where}.description: must be a string", param=f"{where}.description")
    return description


def _add(
    functions: list[dict[str, Any]],
    names: dict[str, ToolName],
    function: dict[str, Any],
    known_as: ToolName,
    where: str,
) -> None:
    name = function["function"]["name"]
    if name in names:
        raise BadRequest(
            f"{where}.name: a tool named '{excerpt(name)}' is defined twice", param=f"{where}.name"
        )
    names[name] = known_as
    functions.append(function)


def _function(tool: dict[str, Any], where: str, namespace: str | None) -> dict[str, Any]:
    name = _name(tool, where)
    parameters = tool.get("parameters")
    if parameters is None:
        parameters = _EMPTY_PARAMETERS
    if not isinstance(parameters, dict):
        raise BadRequest(
            f"{where}.parameters: must be a JSON schema object", param=f"{where}.parameters"
        )
    function: dict[str, Any] = {"name": chat_name(name, namespace), "parameters": parameters}
    description = _description(tool, where)
    if description is not None:
        function["description"] = description
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise BadRequest(f"{where}.strict: must be a boolean", param=f"{where}.strict")
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _custom(tool: dict[str, Any], where: str) -> dict[str, Any]:
    name = _name(tool, where)
    description = _description(tool, where) or ""
    fmt = tool.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar":
        syntax, definition = fmt.get("syntax"), fmt.get("definition")
        if isinstance(definition, str) and definition:
            note = f"The input must follow this {syntax or 'grammar'} grammar:\n{definition}"
            description = f"{description}\n\n{note}" if description else note
    elif fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise BadRequest(
            f"{where}.format: must be {{'type': 'text'}} or a grammar", param=f"{where}.format"
        )
    function: dict[str, Any] = {"name": name, "parameters": _CUSTOM_PARAMETERS}
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def _namespace(
    tool: dict[str, Any],
    where: str,
    functions: list[dict[str, Any]],
    names: dict[str, ToolName],
) -> None:
    namespace = _name(tool, where)
    members = tool.get("tools")
    if not isinstance(members, list):
        raise BadRequest(f"{where}.tools: must be a list", param=f"{where}.tools")
    for j, member in enumerate(members):
        at = f"{where}.tools.{j}"
        if _kind(member, at) != "function":
            raise BadRequest(
                f"{at}.type: a namespace can hold only function tools", param=f"{at}.type"
            )
        function = _function(member, at, namespace)
        _add(functions, names, function, ToolName(member["name"], namespace), at)


def parse_tool_choice(value: object, tools: Tools) -> dict[str, Any]:
    """The chat `tool_choice` (and, for `allowed_tools`, the tools it leaves), as body fields."""
    if value is None:
        return {}
    if value in ("auto", "none", "required"):
        return _choice(str(value), tools.functions)
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(value, dict) or not isinstance(kind, str):
        raise BadRequest(
            "tool_choice: must be 'auto', 'none', 'required' or a tool choice object",
            param="tool_choice",
        )
    if kind in ("function", "custom"):
        name = chat_name(_name(value, "tool_choice"), _namespace_of(value))
        known = tools.names.get(name)
        if known is None or known.custom != (kind == "custom"):
            raise BadRequest(
                f"tool_choice.name: no {kind} tool named '{excerpt(name)}' in tools",
                param="tool_choice.name",
            )
        return {"tool_choice": {"type": "function", "function": {"name": name}}}
    if kind == "allowed_tools":
        return _allowed_tools(value, tools)
    raise BadRequest(
        f"tool_choice.type: '{excerpt(kind)}' cannot be translated; use 'function', 'custom'"
        " or 'allowed_tools'",
        param="tool_choice.type",
    )


def _namespace_of(choice: dict[str, Any]) -> str | None:
    namespace = choice.get("namespace")
    return namespace if isinstance(namespace, str) and namespace else None


def _choice(mode: str, functions: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    if functions:
        return {"tool_choice": mode}
    if mode == "required":
        raise BadRequest("tool_choice: 'required' needs at least one tool", param="tool_choice")
    return {}  # nothing to choose from (e.g. only a web search was offered)


def _allowed_tools(choice: dict[str, Any], tools: Tools) -> dict[str, Any]:
    mode = choice.get("mode", "auto")
    if mode not in ("auto", "required"):
        raise BadRequest("tool_choice.mode: must be 'auto' or 'required'", param="tool_choice.mode")
    allowed = choice.get("tools")
    if not isinstance(allowed, list):
        raise BadRequest("tool_choice.tools: must be a list", param="tool_choice.tools")
    keep: set[str] = set()
    for j, entry in enumerate(allowed):
        at = f"tool_choice.tools.{j}"
        if _kind(entry, at) in ("function", "custom"):
            keep.add(chat_name(_name(entry, at), _namespace_of(entry)))
        elif not is_web_search(str(entry["type"])):
            raise BadRequest(f"{at}.type: only function and custom tools", param=f"{at}.type")
    functions = tuple(f for f in tools.functions if f["function"]["name"] in keep)
    out = _choice(str(mode), functions)
    out["tools"] = list(functions)
    return out


def custom_input(arguments: object) -> str:
    """A custom tool's input from its chat call's arguments (`{"input": "…"}`); arguments that
    are not that object are passed on as they are."""
    text = arguments if isinstance(arguments, str) else ""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if isinstance(value, dict) and isinstance(value.get(CUSTOM_INPUT), str):
        return str(value[CUSTOM_INPUT])
    return text
