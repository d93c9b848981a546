"""Anthropic tools and `tool_choice` → chat function tools and `tool_choice`.

Custom tools (no `type`, or `custom`) become functions; the hints chat has no field for
(`cache_control`, `defer_loading`, `strict`, `eager_input_streaming`, `input_examples`) are
dropped and named. Server and Anthropic-defined tools (web search, code execution, bash,
computer use, tool search...) run inside Anthropic's service: a 400 naming the tool.
"""

from __future__ import annotations

from typing import Any

from tollway.dialects.anthropic.notes import Notes
from tollway.errors import BadRequest, excerpt

TOOL_HINTS = ("defer_loading", "strict", "eager_input_streaming", "input_examples")


def chat_tools(value: object, notes: Notes) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("tools: must be a list", param="tools")
    tools = []
    for i, tool in enumerate(value):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            raise BadRequest(f"{where}: must be an object", param=where)
        kind = tool.get("type", "custom")
        if kind != "custom":
            raise BadRequest(
                f"{where}.type: server and Anthropic-defined tools ('{excerpt(str(kind), 64)}')"
                " cannot be translated; only custom tools with an input_schema",
                param=f"{where}.type",
            )
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{where}.name: required, a string", param=f"{where}.name")
        if not isinstance(schema, dict):
            raise BadRequest(
                f"{where}.input_schema: required, a JSON schema object",
                param=f"{where}.input_schema",
            )
        for hint in ("cache_control", *TOOL_HINTS):
            if tool.get(hint) is not None:
                notes.drop(f"tools[].{hint}")
        function: dict[str, Any] = {"name": name, "parameters": schema}
        description = tool.get("description")
        if isinstance(description, str):
            function["description"] = description
        tools.append({"type": "function", "function": function})
    return tools


def chat_tool_choice(value: object, *, has_tools: bool) -> dict[str, Any]:
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(value, dict) or kind not in ("auto", "any", "tool", "none"):
        raise BadRequest(
            "tool_choice.type: must be 'auto', 'any', 'tool' or 'none'", param="tool_choice.type"
        )
    if kind != "none" and not has_tools:
        raise BadRequest("tool_choice: requires tools", param="tool_choice")
    out: dict[str, Any] = {}
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("tool_choice.name: required, a string", param="tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if value.get("disable_parallel_tool_use") is True and has_tools:
        out["parallel_tool_calls"] = False
    if kind == "none" and not has_tools:
        out.pop("tool_choice")  # nothing to choose from: OpenAI refuses a lone tool_choice
    return out
