"""Request bodies have a ceiling, enforced before and while they are read.

A declared `Content-Length` over the limit is refused at once (413, nothing read, connection
closed). A chunked body is counted as it arrives and cut (413) when it crosses the limit, so a
process never holds more than the limit of any one body. Routes read bodies only after the
caller is authenticated (`http/deps.py`), and may lower the limit for themselves before they
read (`lower_body_limit`): the Management API takes far smaller bodies than chat requests with
images. An error answered while the client is still sending closes the connection, so the
rest of an unwanted body is not received.

The edge middleware (`http/edge.py`) enforces it. Starlette ships a similar middleware; it
answers in plain text and replaces whatever response the app sent (a 401 included) with its
413, so the edge keeps its own, in the API's shapes.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from tollway.errors import PayloadTooLarge

LIMIT_KEY = "tollway.max_body_bytes"


def lower_body_limit(scope: Scope, max_bytes: int) -> None:
    """Lower the body limit of this request (before its body is read)."""
    scope[LIMIT_KEY] = min(max_bytes, scope.get(LIMIT_KEY, max_bytes))


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body larger than {limit} bytes")


async def read_body(receive: Receive) -> bytes:
    """The whole request body, as `Request.body()` reads it (the edge's `receive` counts it
    against the limit; a client gone mid-body is `ClientDisconnect`)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
