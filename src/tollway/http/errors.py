"""Render every error in the shape its API promises, bounded in size; never a stack trace to
the client."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from tollway.dialects.anthropic.errors import error_body as anthropic_error_body
from tollway.errors import (
    DEFAULT_RETRY_AFTER_S,
    MESSAGE_CHARS,
    TollwayError,
    UpstreamRejected,
    excerpt,
    listing,
)
from tollway.http._scope import EXCHANGE

OPENAI_PATHS = ("/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/responses")
ANTHROPIC_PATHS = ("/v1/messages",)


def uses_openai_shape(path: str) -> bool:
    """The inference API's paths (and anything under them) answer in OpenAI's shape."""
    return any(path == base or path.startswith(base + "/") for base in OPENAI_PATHS)


def uses_anthropic_shape(path: str) -> bool:
    return path.startswith(ANTHROPIC_PATHS)


def unknown_path_error(path: str, method: str) -> Response:
    """A path no route serves. Under `/v1/` (the inference API's base) it is a 404 in the
    OpenAI shape (Anthropic's under `/v1/messages`), so the SDKs raise NotFoundError."""
    message = f"not found: {method} {excerpt(path)}"
    if path.startswith("/v1/") and not uses_anthropic_shape(path):
        body = {
            "error": {
                "message": message,
                "type": "not_found_error",
                "code": "not_found",
                "param": None,
            }
        }
        return JSONResponse(body, status_code=404)
    return error_response(path, 404, message, openai_type="not_found_error", code="not_found")


def error_response(
    path: str,
    status: int,
    message: str,
    *,
    openai_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any]
    message = excerpt(message, MESSAGE_CHARS)
    param = None if param is None else excerpt(param, 120)
    if uses_anthropic_shape(path):
        body = anthropic_error_body(status, message)
    elif uses_openai_shape(path):
        body = {"error": {"message": message, "type": openai_type, "code": code, "param": param}}
    else:
        body = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)


def render_tollway_error(path: str, exc: TollwayError) -> Response:
    if isinstance(exc, UpstreamRejected) and _is_openai_error(exc.body):
        if uses_anthropic_shape(path):  # the upstream's own words, in Anthropic's shape
            return error_response(path, exc.status, _error_message(exc.body))
        # An upstream validation error goes back as is: its status and its body.
        return Response(exc.body, status_code=exc.status, media_type="application/json")
    headers: dict[str, str] = dict(exc.headers or {})
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.should_retry is False:
        headers["x-should-retry"] = "false"
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    elif exc.status == 503:  # every 503 says when to come back
        headers["Retry-After"] = str(DEFAULT_RETRY_AFTER_S)
    return error_response(
        path,
        exc.status,
        exc.message,
        openai_type=exc.openai_type,
        code=exc.code,
        param=exc.param,
        headers=headers or None,
    )


def _is_openai_error(body: bytes) -> bool:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), dict)


def _error_message(body: bytes) -> str:
    error = orjson.loads(body)["error"]
    message = error.get("message")
    return (message if isinstance(message, str) else "the upstream refused the request")[:1000]


def describe_validation_error(exc: RequestValidationError) -> tuple[str, str | None]:
    """One line naming the offending fields (the first few; the rest counted), and the first
    field's dotted name. Names come from the input (unknown fields), so they are cut too."""
    parts: list[str] = []
    first: str | None = None
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return "malformed JSON body", None
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        name = excerpt(".".join(loc), 120) or "body"
        first = first or name
        parts.append(f"{name}: {_MESSAGES.get(error.get('type', ''), error.get('msg', ''))}")
    return listing(parts), first


_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "required",
}


def _note(request: Request, message: str) -> None:
    """The error goes into the request's log line (and its request log record)."""
    exchange = request.scope.get(EXCHANGE)
    if exchange is not None:
        exchange.error = message


def install_error_handlers(app: FastAPI) -> None:
    """Errors the app knows. An unexpected one is rendered (500 in the API's shape, no stack
    trace, the keep-alive connection kept) and logged by the request log middleware
    (`http/exchange.py`), which wraps everything."""

    async def on_tollway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TollwayError)
        _note(request, exc.message)
        return render_tollway_error(request.url.path, exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message, param = describe_validation_error(exc)
        _note(request, message)
        return error_response(request.url.path, 400, message, param=param)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        # Starlette's own: no route (404), a method the path does not have (405, with Allow).
        assert isinstance(exc, StarletteHTTPException)
        path = request.url.path
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and exc.detail == "Not Found":  # no route: an unknown path
            message = f"not found: {request.method} {excerpt(path)}"
            _note(request, message)
            return unknown_path_error(path, request.method)
        if exc.status_code == 404:
            message = f"not found: {request.method} {excerpt(path)}"
        elif exc.status_code == 405:
            message = f"method not allowed: {request.method} {excerpt(path)}"
            # Starlette's Allow names the methods of the first route of the path only.
            headers["Allow"] = ", ".join(allowed_methods(request))
        else:
            message = str(exc.detail)
        _note(request, message)
        return error_response(
            path,
            exc.status_code,
            message,
            openai_type="not_found_error" if exc.status_code == 404 else "invalid_request_error",
            code="not_found" if exc.status_code == 404 else None,
            headers=headers,
        )

    app.add_exception_handler(TollwayError, on_tollway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (asked of the routes themselves)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
