"""The usage report over HTTP (docs/api.md, usage)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from tollway.billing.usage import parse_query
from tollway.gateway.auth import Principal
from tollway.http.deps import ManagementRoute, app_state, management_principal

router = APIRouter(route_class=ManagementRoute)
Caller = Annotated[Principal, Depends(management_principal)]


@router.get(
    "/v1/manage/usage",
    tags=["Usage"],
    responses={
        400: {"description": "Bad Request - A bad bucket, group_by, or date."},
        401: {"description": "Unauthorized - Missing or invalid token."},
        403: {"description": "Forbidden - The provided API key is not a management key."},
        500: {"description": "Internal server error."},
    },
)
async def get_usage(
    request: Request,
    caller: Caller,
    from_: Annotated[
        str | None, Query(alias="from", description="ISO 8601; default: today 00:00 UTC.")
    ] = None,
    until: Annotated[str | None, Query(description="ISO 8601; default: now.")] = None,
    bucket: Literal["1h", "6h", "1d", "1w", "1M", "1Y"] | None = None,
    group_by: Literal["none", "user", "user_key", "model", "provider"] | None = None,
) -> dict[str, Any]:
    state = app_state(request)
    query = parse_query(state.clock, from_, until, bucket, group_by)
    await state.meter.sync()  # this process's usage events not yet group-committed
    return await state.usage.report(
        user_id=caller.user_id, project_id=caller.project_id, query=query
    )
