"""The one middleware around every HTTP exchange (pure ASGI: bodies are neither read nor
buffered, streams pass through).

In one layer it does what three did: the request's id and `Exchange` (`http/exchange.py`),
`x-request-id` on the response, the body limit (`http/limits.py`: a declared size over it is
a 413 before anything is read, a body is counted while it is read, an error answered before the
body was read whole closes the connection), the request's span when tracing is on, the 500 of
an unexpected error, and the one log line and request log record once the response has ended
(a stream: however it ended; a client gone before its body was complete: status 499, no
trace). Then it dispatches: the inference endpoints' POSTs go straight
to their plain-ASGI handlers (`http/fastpath.py`), everything else to FastAPI's router.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tollway.errors import excerpt
from tollway.http._scope import EXCHANGE
from tollway.http.errors import error_response, render_tollway_error
from tollway.http.exchange import Exchange, finish
from tollway.http.fastpath import FAST_ROUTES, FastRoute
from tollway.http.limits import LIMIT_KEY, too_large
from tollway.observe.logs import FIELDS
from tollway.observe.tracing import Tracer
from tollway.state import AppState

_SANE_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MAX_PATH = 200
_CLOSE = (b"connection", b"close")
CLIENT_GONE = 499  # the status a request's log line and record carry when its client left

log = logging.getLogger("tollway.request")


class Edge:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        tracer: Tracer,
        fast: Mapping[str, FastRoute] = FAST_ROUTES,
    ) -> None:
        self.app = app  # the rest of FastAPI's stack: exception handlers, router
        self.max_bytes = max_bytes
        self.fast = fast
        self.inner = tracer.wrap(self._dispatch)  # a span for every request, 413s included

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: AppState = scope["app"].state.tollway
        client_id, declared, chunked = _read_headers(scope)
        exchange = Exchange(
            request_id=state.request_ids.next(),
            client_request_id=client_id,
            method=scope["method"],
            path=scope["path"][:_MAX_PATH],
            started=time.perf_counter(),
            created_at_ms=int(state.clock() * 1000),
        )
        scope[EXCHANGE] = exchange
        scope[LIMIT_KEY] = self.max_bytes
        id_header = (b"x-request-id", (exchange.client_request_id or exchange.request_id).encode())
        received = 0
        complete = not (declared or chunked)

        async def limited_receive() -> Message:
            nonlocal received, complete
            limit: int = scope[LIMIT_KEY]  # a route may have lowered it (`lower_body_limit`)
            if declared is not None and declared > limit:
                raise too_large(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large(limit)
                complete = not message.get("more_body", False)
            return message

        async def edge_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = exchange.status = message["status"]
                headers = [*message.get("headers", ()), id_header]
                if status >= 400 and not complete:  # an error before the body was read whole
                    headers.append(_CLOSE)
                message["headers"] = headers
            await send(message)

        try:
            exchange.body_refused = declared is not None and declared > self.max_bytes
            await self.inner(scope, limited_receive, edge_send)
        except ClientDisconnect:
            # Gone while sending its body: nobody to answer, nothing went wrong here. The
            # line says so (499, nginx's "client closed request"), without a trace.
            if exchange.status:
                raise
            exchange.status = CLIENT_GONE
            exchange.error = "client disconnected before its request body was complete"
        except Exception as exc:
            log.error(
                "unhandled error",
                exc_info=exc,  # the trace goes to the server log only, never to the client
                extra={
                    FIELDS: {"request_id": exchange.request_id, "error": excerpt(repr(exc), 500)}
                },
            )
            if exchange.status:  # the response has started: nothing more can be said
                raise
            exchange.error = "internal server error"
            response = error_response(
                exchange.path, 500, exchange.error, openai_type="server_error"
            )
            await response(scope, receive, edge_send)
        finally:
            finish(state, exchange)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange: Exchange = scope[EXCHANGE]
        if exchange.body_refused:  # a declared body over the limit: nothing is read
            await render_tollway_error(scope["path"], too_large(self.max_bytes))(
                scope, receive, send
            )
            return
        route = self.fast.get(scope["path"]) if scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        await route.serve(scope, receive, send)


def _read_headers(scope: Scope) -> tuple[str | None, int | None, bool]:
    """One pass over the request's headers: a sane client request id, the declared body size
    (None when absent or not a number), whether the body is chunked."""
    client_id: str | None = None
    declared: int | None = None
    seen_id = seen_length = chunked = False
    for name, value in scope["headers"]:
        if name == b"x-request-id" and not seen_id:
            seen_id = True
            text = value.decode("latin-1")
            client_id = text if _SANE_CLIENT_ID.fullmatch(text) else None
        elif name == b"content-length" and not seen_length:
            seen_length = True
            declared = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = chunked or b"chunked" in value.lower()
    return client_id, declared, chunked
