"""Request-scoped access to the application state and the caller's identity."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from fastapi import Request

from tollway.gateway.auth import Principal
from tollway.state import AppState

if TYPE_CHECKING:
    from tollway.http.exchange import Exchange

EXCHANGE = "tollway.exchange"  # the scope key under which the handlers find the Exchange


def app_state(request: Request) -> AppState:
    return cast(AppState, request.app.state.tollway)


def exchange_of(request: Request) -> Exchange:
    return cast("Exchange", request.scope[EXCHANGE])


async def management_principal(request: Request) -> Principal:
    principal = await app_state(request).auth.management(request.headers.get("authorization"))
    exchange_of(request).principal = principal  # for the request's log line
    return principal
