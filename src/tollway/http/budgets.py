"""Budgets over HTTP (docs/api.md, budgets): project admins list, create and delete them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from tollway.billing.budgets import BudgetView, NewBudget, iso_utc
from tollway.billing.credits import CREDITS_PER_EUR, credits_to_json_number
from tollway.errors import BadRequest
from tollway.gateway.auth import Principal
from tollway.http.deps import ManagementRoute, actor_of, app_state, management_principal
from tollway.http.fields import EurAmount, KeyName, ObjectId

router = APIRouter(route_class=ManagementRoute)
Caller = Annotated[Principal, Depends(management_principal)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad Request - Invalid input."},
    401: {"description": "Unauthorized - Missing or invalid token."},
    403: {"description": "Forbidden - Not a management key, or not a project admin."},
    500: {"description": "Internal server error."},
}


class CreateBudgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Literal["project", "each_user", "user", "each_key", "key"]
    period: Literal["daily", "weekly", "monthly"]
    limit: EurAmount = Field(description="EUR per period.")
    user_id: ObjectId | None = Field(
        default=None,
        description="The user of a 'user' budget, or the owner of the key of a 'key' "
        "budget (default: the caller).",
    )
    key_name: KeyName | None = Field(default=None, description="The key of a 'key' budget.")


class DeleteBudgetBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    id: ObjectId


def render_budget(view: BudgetView) -> dict[str, Any]:
    b = view.budget
    return {
        "id": b.id,
        "scope": b.scope,
        "period": b.period,
        "limit": credits_to_json_number(b.limit_credits),
        "currency": "EUR",
        "user_id": b.user_id,
        "key_name": b.key_name,
        "created_at": b.created_at,
        "window_start": iso_utc(view.window_start),
        "resets_at": iso_utc(view.resets_at),
        "spent": credits_to_json_number(view.spent_credits),
        "reserved": credits_to_json_number(view.reserved_credits),
        "subjects": [
            {
                "user_id": s.user_id,
                "key_name": s.key_name,
                "spent": credits_to_json_number(s.spent_credits),
                "reserved": credits_to_json_number(s.reserved_credits),
            }
            for s in view.subjects
        ],
    }


@router.get("/v1/manage/budgets", tags=["Budgets"], responses=_ERRORS)
async def list_budgets(request: Request, caller: Caller) -> dict[str, Any]:
    views = await app_state(request).budgets.list(
        user_id=caller.user_id, project_id=caller.project_id
    )
    return {"budgets": [render_budget(v) for v in views]}


@router.post(
    "/v1/manage/budgets",
    tags=["Budgets"],
    status_code=201,
    responses=_ERRORS,
)
async def create_budget(
    request: Request, caller: Caller, body: Annotated[CreateBudgetBody, Body()]
) -> JSONResponse:
    credits = body.limit * CREDITS_PER_EUR
    if credits != credits.to_integral_value():
        raise BadRequest(
            "limit: more than 6 decimal places (1 credit = 0.000001 EUR)", param="limit"
        )
    view = await app_state(request).budgets.create(
        actor=actor_of(request, caller),
        user_id=caller.user_id,
        project_id=caller.project_id,
        spec=NewBudget(
            scope=body.scope,
            period=body.period,
            limit_credits=int(credits),
            user_id=body.user_id,
            key_name=body.key_name,
        ),
    )
    return JSONResponse(render_budget(view), status_code=201)


@router.delete(
    "/v1/manage/budgets",
    tags=["Budgets"],
    responses=_ERRORS | {404: {"description": "Not Found - No such budget in this project."}},
)
async def delete_budget(
    request: Request, caller: Caller, body: Annotated[DeleteBudgetBody, Body()]
) -> dict[str, Any]:
    await app_state(request).budgets.delete(
        actor=actor_of(request, caller),
        user_id=caller.user_id,
        project_id=caller.project_id,
        budget_id=body.id,
    )
    return {"success": True, "deleted": body.id}
