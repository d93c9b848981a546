"""The OpenAPI document says what the server does: invalid input is a 400 (never FastAPI's
422), error bodies have the shape their API renders, and authenticated operations name the
bearer scheme. Request schemas carry the enums and patterns the server enforces."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.security import HTTPBearer

from tollway.http.errors import uses_anthropic_shape, uses_openai_shape

# Documents `Authorization: Bearer <key>` on the operations that depend on it; authentication
# itself is done by the Authenticator (auto_error=False: this object never refuses anything).
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="A Tollway API key (`tw-…`); the Management API needs a management key.",
)

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
_OPENAI_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}
_ANTHROPIC_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}
_BAD_REQUEST = "Bad Request - Invalid input; the message names the field."
_TOO_LARGE = "Content Too Large - The body is over the configured limit."

_ROUTER_FIELDS: dict[str, Any] = {
    "preference": {"type": "string", "enum": ["speed", "cost", "balanced"]},
    "allowed_providers": {"type": ["array", "null"], "items": {"type": "string"}},
    "eu_native": {"type": "boolean"},
    "allow_quantization": {"type": "boolean"},
    "allow_zero_data_retention": {"type": "boolean"},
    "enable_model_fallback": {"type": "boolean"},
    "include_metadata": {"type": "boolean"},
}
CHAT_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "stream": {"type": "boolean"},
        "stream_options": {"type": ["object", "null"]},
        "max_tokens": {"type": ["integer", "null"], "minimum": 1},
        "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 128},
        **_ROUTER_FIELDS,
    },
}
MESSAGES_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["model", "max_tokens", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "messages": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "stream": {"type": "boolean"},
        **_ROUTER_FIELDS,
    },
}
COUNT_TOKENS_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
        "tools": {"type": "array", "items": {"type": "object"}},
    },
}
_STRING_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}
RESPONSES_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["model", "input"],
    "additionalProperties": False,  # an unknown field is a 400 naming it
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "input": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "minItems": 1, "items": {"type": "object"}},
            ]
        },
        "instructions": _STRING_OR_NULL,
        "stream": {"type": ["boolean", "null"]},
        "max_output_tokens": {"type": ["integer", "null"], "minimum": 1},
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "tools": {"type": ["array", "null"], "items": {"type": "object"}},
        "tool_choice": {
            "anyOf": [
                {"type": "string", "enum": ["auto", "none", "required"]},
                {"type": "object"},
                {"type": "null"},
            ]
        },
        "parallel_tool_calls": {"type": ["boolean", "null"]},
        "text": {"type": ["object", "null"]},
        "reasoning": {"type": ["object", "null"]},
        "metadata": {
            "type": ["object", "null"],
            "maxProperties": 16,
            "additionalProperties": {"type": "string", "maxLength": 512},
        },
        "user": _STRING_OR_NULL,
        "safety_identifier": _STRING_OR_NULL,
        # Accepted and not used (docs/responses.md): nothing is stored.
        "store": {"type": ["boolean", "null"]},
        "include": {"type": ["array", "null"], "items": {"type": "string"}},
        "prompt_cache_key": _STRING_OR_NULL,
        "prompt_cache_retention": _STRING_OR_NULL,
        "client_metadata": {"type": ["object", "null"]},
        "service_tier": _STRING_OR_NULL,
        "stream_options": {"type": ["object", "null"]},
        "max_tool_calls": {"type": ["integer", "null"]},
        "truncation": {"type": ["string", "null"], "enum": ["auto", "disabled", None]},
        # Need stored responses: only their empty values are accepted.
        "previous_response_id": {"type": "null"},
        "conversation": {"type": "null"},
        "background": {"type": ["boolean", "null"], "enum": [False, None]},
        "prompt": {"type": "null"},
        "top_logprobs": {"type": "null"},
        **_ROUTER_FIELDS,
    },
}
EMBEDDINGS_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "input": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "minItems": 1, "items": {"type": "string"}},
                {"type": "array", "minItems": 1, "items": {"type": "integer"}},
                {"type": "array", "minItems": 1, "items": {"type": "array"}},
            ]
        },
        **_ROUTER_FIELDS,
    },
}
INFERENCE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad Request - Invalid input, or no candidate left by the policy."},
    401: {"description": "Unauthorized - Missing or invalid API key."},
    402: {"description": "Payment Required - Insufficient balance."},
    404: {"description": "Not Found - Unknown model."},
    429: {"description": "Too Many Requests - A rate limit or a budget is exhausted."},
    502: {"description": "Bad Gateway - Every upstream failed."},
    503: {"description": "Service Unavailable - No healthy upstream."},
    504: {"description": "Gateway Timeout - The upstream timed out."},
}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` of a route that reads its JSON body itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def install_openapi(app: FastAPI) -> None:
    generate = app.openapi  # FastAPI's, which caches its document

    def openapi() -> dict[str, Any]:
        return _truthful(generate())  # idempotent: in place, on the cached document

    app.openapi = openapi  # type: ignore[method-assign]


def _truthful(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["ErrorResponse"] = _ERROR_SCHEMA
    schemas["OpenAIError"] = _OPENAI_ERROR_SCHEMA
    schemas["AnthropicError"] = _ANTHROPIC_ERROR_SCHEMA
    for path, operations in document.get("paths", {}).items():
        shape = (
            "AnthropicError"
            if uses_anthropic_shape(path)
            else "OpenAIError"
            if uses_openai_shape(path)
            else "ErrorResponse"
        )
        ref = f"#/components/schemas/{shape}"
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", {"description": _BAD_REQUEST})
            if "requestBody" in operation:
                responses.setdefault("400", {"description": _BAD_REQUEST})
                responses.setdefault("413", {"description": _TOO_LARGE})
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    response["content"] = {"application/json": {"schema": {"$ref": ref}}}
    return document
