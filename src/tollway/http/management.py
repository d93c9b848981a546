"""The Management API (docs/api.md): keys, project configuration, balance, and the caller's
own identity (``/v1/manage/me``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse

from tollway.billing.credits import credits_to_json_number
from tollway.gateway.auth import Principal
from tollway.http.deps import ManagementRoute, actor_of, app_state, management_principal
from tollway.http.fields import KeyName
from tollway.projects.config import ProjectConfig, ProjectConfigUpdate

router = APIRouter(route_class=ManagementRoute)
Caller = Annotated[Principal, Depends(management_principal)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad Request - Invalid input."},
    401: {"description": "Unauthorized - Missing or invalid token."},
    403: {"description": "Forbidden - The provided API key is not a management key."},
    500: {"description": "Internal server error."},
}


def _responses(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of one more error status, on top of the common ones."""
    return _ERRORS | {status: {"description": description}}


class CreateKeyBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    name: KeyName
    is_management_key: bool = False


class DeleteKeyBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    name: KeyName


@router.get("/v1/manage/api-keys", tags=["API keys"], responses=_ERRORS)
async def list_api_keys(request: Request, caller: Caller) -> dict[str, Any]:
    rows = await app_state(request).keys.list(caller.user_id)
    return {
        "api_keys": [
            {"name": r.name, "created_at": r.created_at, "is_management_key": r.is_management}
            for r in rows
        ]
    }


@router.post(
    "/v1/manage/api-keys",
    tags=["API keys"],
    status_code=201,
    responses=_responses(400, "Invalid input, duplicate name, or key limit reached."),
)
async def create_api_key(
    request: Request, caller: Caller, body: Annotated[CreateKeyBody, Body()]
) -> JSONResponse:
    created = await app_state(request).keys.create(
        actor=actor_of(request, caller),
        user_id=caller.user_id,
        project_id=caller.project_id,
        name=body.name,
        is_management=body.is_management_key,
    )
    return JSONResponse(
        {
            "name": created.name,
            "api_key": created.api_key,
            "created_at": created.created_at,
            "is_management_key": created.is_management_key,
        },
        status_code=201,
    )


@router.delete(
    "/v1/manage/api-keys",
    tags=["API keys"],
    responses=_responses(400, "Invalid input or attempting to delete the key in use.")
    | _responses(404, "Not Found - The specified API key does not exist."),
)
async def delete_api_key(
    request: Request, caller: Caller, body: Annotated[DeleteKeyBody, Body()]
) -> dict[str, Any]:
    state = app_state(request)
    deleted = await state.keys.delete(
        actor=actor_of(request, caller),
        user_id=caller.user_id,
        name=body.name,
        calling_key_id=caller.key_id,
    )
    state.auth.forget(deleted.id)
    return {"success": True, "deleted": deleted.name}


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def render_config(config: ProjectConfig) -> dict[str, Any]:
    return {
        "_id": config.id,
        "project_id": config.project_id,
        "active": config.active,
        "allow_overwrite": config.allow_overwrite,
        "inference_config": config.inference_config.model_dump(),
        "schema_version": config.schema_version,
        "created_at": _iso_ms(config.created_at_ms),
        "updated_at": _iso_ms(config.updated_at_ms),
    }


_CONFIG_ERRORS = _responses(404, "Not Found - Project configuration not found.")


@router.get("/v1/project-configs", tags=["Project configuration"], responses=_CONFIG_ERRORS)
@router.get("/api/v1/project-configs", include_in_schema=False)
async def get_project_config(request: Request, caller: Caller) -> dict[str, Any]:
    return render_config(await app_state(request).projects.get(caller.project_id))


@router.put(
    "/v1/project-configs",
    tags=["Project configuration"],
    responses=_CONFIG_ERRORS
    | _responses(400, "Bad Request - Invalid configuration or registry validation failed.")
    | _responses(403, "Forbidden - Not a management key or user is not an admin."),
)
@router.put("/api/v1/project-configs", include_in_schema=False)
async def put_project_config(
    request: Request, caller: Caller, body: Annotated[ProjectConfigUpdate, Body()]
) -> dict[str, Any]:
    state = app_state(request)
    await state.projects.update(
        actor=actor_of(request, caller),
        user_id=caller.user_id,
        project_id=caller.project_id,
        change=body,
    )
    state.configs.forget(caller.project_id)
    return {"success": True}


@router.get("/v1/manage/me", tags=["Session"], responses=_ERRORS)
async def whoami(request: Request, caller: Caller) -> dict[str, Any]:
    """The key's user, project and role there (what a console needs to know what it may do)."""
    who = await app_state(request).accounts.identity(
        user_id=caller.user_id, project_id=caller.project_id
    )
    return {
        "user_id": who.user.id,
        "user": who.user.name,
        "project_id": who.project.id,
        "project": who.project.name,
        "role": who.role,
        "key_name": None if caller.session else caller.key_name,
        "is_management_key": caller.is_management,
    }


@router.get("/v1/user/balance", tags=["Balance"], responses=_ERRORS)
@router.get("/api/v1/user/balance", include_in_schema=False)
async def get_balance(request: Request, caller: Caller) -> dict[str, Any]:
    state = app_state(request)
    await state.meter.sync()  # this process's charges not yet group-committed
    credits = await state.accounts.balance_credits(caller.user_id)
    return {"current_balance": credits_to_json_number(credits), "currency": "EUR"}
