"""The usage report over HTTP (docs/api.md, usage)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from tollway.billing.usage import parse_query
from tollway.gateway.auth import Principal
from tollway.http.deps import app_state, management_principal

router = APIRouter()
Caller = Annotated[Principal, Depends(management_principal)]


@router.get(
    "/v1/manage/usage",
    tags=["Usage"],
    responses={
        400: {"description": "Bad Request - A bad bucket, group_by, or date."},
        401: {"description": "Unauthorized - Missing or invalid token."},
        403: {"description": "Forbidden - The provided API key is not a management key."},
    },
)
async def get_usage(
    request: Request,
    caller: Caller,
    from_: Annotated[str | None, Query(alias="from")] = None,
    until: str | None = None,
    bucket: str | None = None,
    group_by: str | None = None,
) -> dict[str, Any]:
    state = app_state(request)
    query = parse_query(state.clock, from_, until, bucket, group_by)
    return await state.usage.report(
        user_id=caller.user_id, project_id=caller.project_id, query=query
    )
