"""The request log over HTTP: GET /v1/manage/requests and /v1/manage/requests/{request_id}."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from tollway.gateway.auth import Principal
from tollway.http.deps import ManagementRoute, app_state, management_principal
from tollway.observe.requests import parse_request_query

router = APIRouter(tags=["Request log"], route_class=ManagementRoute)
Caller = Annotated[Principal, Depends(management_principal)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Unauthorized - Missing or invalid token."},
    403: {"description": "Forbidden - The provided API key is not a management key."},
}


@router.get(
    "/v1/manage/requests",
    responses={400: {"description": "Bad Request - A bad filter, limit or cursor."}, **_ERRORS},
)
async def list_requests(
    request: Request,
    caller: Caller,
    from_: Annotated[str | None, Query(alias="from")] = None,
    until: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    status: str | None = None,
    key_name: str | None = None,
    limit: str | None = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Inference requests, newest first: the caller's own, or the project's for an admin."""
    query = parse_request_query(
        from_=from_,
        until=until,
        model=model,
        provider=provider,
        status=status,
        key_name=key_name,
        limit=limit,
        cursor=cursor,
    )
    return await app_state(request).request_log.list(
        user_id=caller.user_id, project_id=caller.project_id, query=query
    )


@router.get(
    "/v1/manage/requests/{request_id}",
    responses={404: {"description": "Not Found - Unknown, or not yours to see."}, **_ERRORS},
)
async def get_request(request: Request, caller: Caller, request_id: str) -> dict[str, Any]:
    """One request with its attempts and routing."""
    return await app_state(request).request_log.get(
        user_id=caller.user_id, project_id=caller.project_id, request_id=request_id
    )
