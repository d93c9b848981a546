"""Request-scoped access to the application state and the caller's identity, and the route
class of the Management API: authenticate first, then read the body."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from tollway.audit.actor import Actor
from tollway.gateway.auth import Principal
from tollway.http._scope import EXCHANGE
from tollway.http.limits import lower_body_limit
from tollway.http.openapi import BEARER
from tollway.jsonbody import check_shape, parse_json_body_exact
from tollway.state import AppState

if TYPE_CHECKING:
    from tollway.http.exchange import Exchange


def app_state(request: Request) -> AppState:
    return cast(AppState, request.app.state.tollway)


def exchange_of(request: Request) -> Exchange:
    return cast("Exchange", request.scope[EXCHANGE])


SESSION_COOKIE = "tollway_session"
CSRF_HEADER = "x-csrf-token"
PROJECT_HEADER = "x-tollway-project"


def actor_of(request: Request, caller: Principal) -> Actor:
    """Who the audit log names for a change this request makes."""
    kind = "session" if caller.session else "key"
    return Actor(kind, caller.key_name, caller.user_id, exchange_of(request).request_id)


async def authenticate_management(request: Request) -> Principal:
    """A management key (Authorization: Bearer), or else the console's session cookie with
    its CSRF header (only where OIDC sign-in is configured)."""
    state = app_state(request)
    header = request.headers.get("authorization")
    cookie = request.cookies.get(SESSION_COOKIE)
    if header is None and cookie and state.sessions is not None:
        return await state.sessions.principal(
            cookie,
            csrf=request.headers.get(CSRF_HEADER),
            project_id=request.headers.get(PROJECT_HEADER),
        )
    return await state.auth.management(header)


async def management_principal(
    request: Request,
    _documented: Annotated[object, Depends(BEARER)] = None,
) -> Principal:
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):  # authenticated by ManagementRoute already
        return principal
    principal = await authenticate_management(request)
    exchange_of(request).principal = principal  # for the request's log line
    return principal


class ManagementRoute(APIRoute):
    """FastAPI reads a route's body before it resolves any dependency, authentication
    included: an anonymous client could make every process buffer whatever it sends. Here
    the caller is authenticated first; then the body is read within the Management API's
    limit and parsed strictly (a 400 naming the field of a lone surrogate; fractions exact),
    and FastAPI validates what was parsed."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def authenticate_then_read(request: Request) -> Response:
            state = app_state(request)
            principal = await authenticate_management(request)
            request.state.principal = principal
            exchange_of(request).principal = principal  # for the request's log line
            lower_body_limit(request.scope, state.settings.max_management_body_bytes)
            body = await request.body()
            if not body:
                return await handler(request)
            check_shape(body, state.settings.json_limits)  # depth, number of values
            return await handler(_Parsed(request, body, parse_json_body_exact(body)))

        return authenticate_then_read


class _Parsed(Request):
    """The request as FastAPI's handler sees it: the body already read and parsed."""

    def __init__(self, request: Request, raw: bytes, value: Any) -> None:
        super().__init__(request.scope, request.receive)
        self.raw = raw
        self.value = value

    async def body(self) -> bytes:
        return self.raw

    async def json(self) -> Any:
        return self.value
