"""Render every error in the shape its API promises; never a stack trace to the client."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from tollway.dialects.anthropic.errors import error_body as anthropic_error_body
from tollway.errors import TollwayError, UpstreamRejected

log = logging.getLogger("tollway.http")

OPENAI_PATHS = ("/v1/chat/completions", "/v1/embeddings", "/v1/models")
ANTHROPIC_PATHS = ("/v1/messages",)


def uses_openai_shape(path: str) -> bool:
    return path.startswith(OPENAI_PATHS)


def uses_anthropic_shape(path: str) -> bool:
    return path.startswith(ANTHROPIC_PATHS)


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
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
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
    """One line naming the offending field(s), and the first field's dotted name."""
    parts: list[str] = []
    first: str | None = None
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        if error.get("type") == "json_invalid":
            return "malformed JSON body", None
        name = ".".join(loc) or "body"
        first = first or name
        parts.append(f"{name}: {error.get('msg', 'invalid value')}")
    return "invalid input: " + "; ".join(parts), first


def install_error_handlers(app: FastAPI) -> None:
    async def on_tollway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TollwayError)
        return render_tollway_error(request.url.path, exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message, param = describe_validation_error(exc)
        return error_response(request.url.path, 400, message, param=param)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(
            request.url.path,
            exc.status_code,
            str(exc.detail),
            openai_type="not_found_error" if exc.status_code == 404 else "invalid_request_error",
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s: %r", request.method, request.url.path, exc)
        return error_response(
            request.url.path, 500, "internal server error", openai_type="server_error"
        )

    app.add_exception_handler(TollwayError, on_tollway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
