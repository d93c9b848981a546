"""Request-scoped access to the application state and the caller's identity."""

from __future__ import annotations

from typing import cast

from fastapi import Request

from tollway.gateway.auth import Principal
from tollway.state import AppState


def app_state(request: Request) -> AppState:
    return cast(AppState, request.app.state.tollway)


async def management_principal(request: Request) -> Principal:
    return await app_state(request).auth.management(request.headers.get("authorization"))
