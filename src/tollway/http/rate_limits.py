"""Rate limits over HTTP: project admins list, create and delete them (beside budgets)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.responses import JSONResponse

from tollway.gateway.auth import Principal
from tollway.http.deps import ManagementRoute, actor_of, app_state, management_principal
from tollway.http.fields import KeyName, ObjectId
from tollway.limits.service import MAX_PER_MINUTE, NewRateLimit, rate_limit_json

router = APIRouter(route_class=ManagementRoute)
Caller = Annotated[Principal, Depends(management_principal)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad Request - Invalid input."},
    401: {"description": "Unauthorized - Missing or invalid token."},
    403: {"description": "Forbidden - Not a management key, or not a project admin."},
    500: {"description": "Internal server error."},
}
PerMinute = Annotated[StrictInt | None, Field(default=None, ge=1, le=MAX_PER_MINUTE)]


class CreateRateLimitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Literal["project", "each_user", "user", "each_key", "key"]
    requests_per_minute: PerMinute = None
    tokens_per_minute: PerMinute = None
    user_id: ObjectId | None = Field(
        default=None,
        description="The user of a 'user' limit, or the owner of the key of a 'key' limit "
        "(default: the caller).",
    )
    key_name: KeyName | None = Field(default=None, description="The key of a 'key' limit.")


class DeleteRateLimitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: ObjectId


@router.get("/v1/manage/rate-limits", tags=["Rate limits"], responses=_ERRORS)
async def list_rate_limits(request: Request, caller: Caller) -> dict[str, Any]:
    rows = await app_state(request).rate_limits.list(
        user_id=caller.user_id, project_id=caller.project_id
    )
    return {"rate_limits": [rate_limit_json(r) for r in rows]}


@router.post(
    "/v1/manage/rate-limits",
    tags=["Rate limits"],
    status_code=201,
    responses=_ERRORS,
)
async def create_rate_limit(
    request: Request, caller: Caller, body: Annotated[CreateRateLimitBody, Body()]
) -> JSONResponse:
    row = await app_state(request).rate_limits.create(
        actor=actor_of(request, caller),
        user_id=caller.user_id,
        project_id=caller.project_id,
        spec=NewRateLimit(
            scope=body.scope,
            requests_per_minute=body.requests_per_minute,
            tokens_per_minute=body.tokens_per_minute,
            user_id=body.user_id,
            key_name=body.key_name,
        ),
    )
    return JSONResponse(rate_limit_json(row), status_code=201)


@router.delete(
    "/v1/manage/rate-limits",
    tags=["Rate limits"],
    responses=_ERRORS | {404: {"description": "Not Found - No such rate limit in this project."}},
)
async def delete_rate_limit(
    request: Request, caller: Caller, body: Annotated[DeleteRateLimitBody, Body()]
) -> dict[str, Any]:
    await app_state(request).rate_limits.delete(
        actor=actor_of(request, caller),
        user_id=caller.user_id,
        project_id=caller.project_id,
        limit_id=body.id,
    )
    return {"success": True, "deleted": body.id}
