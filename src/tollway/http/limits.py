"""Request bodies have a ceiling, enforced before and while they are read.

A declared `Content-Length` over the limit is refused at once (413, nothing read, connection
closed). A chunked body is counted as it arrives and cut (413) when it crosses the limit, so a
process never holds more than the limit of any one body. Routes read bodies only after the
caller is authenticated (`http/deps.py`), and may lower the limit for themselves before they
read (`lower_body_limit`): the Management API takes far smaller bodies than chat requests with
images. An error answered while the client is still sending closes the connection, so the
rest of an unwanted body is not received.

Starlette ships a similar middleware; it answers in plain text and replaces whatever response
the app sent (a 401 included) with its 413, so the edge keeps its own, in the API's shapes.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tollway.errors import PayloadTooLarge
from tollway.http.errors import render_tollway_error

_LIMIT_KEY = "tollway.max_body_bytes"


def lower_body_limit(scope: Scope, max_bytes: int) -> None:
    """Lower the body limit of this request (before its body is read)."""
    scope[_LIMIT_KEY] = min(max_bytes, scope.get(_LIMIT_KEY, max_bytes))


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body larger than {limit} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = _content_length(headers)
        scope[_LIMIT_KEY] = self.max_bytes
        if declared is not None and declared > self.max_bytes:
            response = render_tollway_error(scope["path"], too_large(self.max_bytes))
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        has_body = bool(declared) or "chunked" in headers.get("transfer-encoding", "").lower()
        received = 0
        complete = not has_body

        async def limited_receive() -> Message:
            nonlocal received, complete
            limit: int = scope[_LIMIT_KEY]
            if declared is not None and declared > limit:
                raise too_large(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large(limit)
                complete = not message.get("more_body", False)
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                if not complete:  # an error before the body was read whole
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (b"connection", b"close")],
                    }
            await send(message)

        await self.app(scope, limited_receive, closing_send)


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.isdigit():
        return None
    return int(value)
