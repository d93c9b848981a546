"""The audit trail over HTTP: GET /v1/manage/audit (docs/audit.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from tollway.audit.service import parse_audit_query
from tollway.gateway.auth import Principal
from tollway.http.deps import ManagementRoute, app_state, management_principal

router = APIRouter(tags=["Audit log"], route_class=ManagementRoute)
Caller = Annotated[Principal, Depends(management_principal)]


@router.get(
    "/v1/manage/audit",
    responses={
        400: {"description": "Bad Request - A bad filter, limit or cursor."},
        401: {"description": "Unauthorized - Missing or invalid token."},
        403: {"description": "Forbidden - The provided API key is not a management key."},
    },
)
async def list_audit(
    request: Request,
    caller: Caller,
    action: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: str | None = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Changes made to the key's project, newest first: every change for a project admin,
    the caller's own for a member."""
    query = parse_audit_query(
        action=action, actor=actor, since=since, until=until, limit=limit, cursor=cursor
    )
    return await app_state(request).audit.list(
        user_id=caller.user_id, project_id=caller.project_id, query=query
    )
