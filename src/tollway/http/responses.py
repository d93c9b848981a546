"""OpenAI's Responses API: translated onto the same gateway path as chat completions
(`tollway.dialects.responses`). `POST /v1/responses` is declared here for the OpenAPI document
and served as plain ASGI by `http/fastpath.py`. Tollway stores no responses, so retrieving one
by id is always a 404 (docs/responses.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from tollway.errors import NotFound, excerpt
from tollway.http.deps import app_state, exchange_of
from tollway.http.fastpath import RESPONSES, Delegated
from tollway.http.openapi import BEARER, INFERENCE_ERRORS, RESPONSES_BODY, json_body

router = APIRouter(tags=["Responses"])


# Authenticated before the body is read (within TOLLWAY_MAX_BODY_BYTES).
@router.post(
    "/v1/responses",
    openapi_extra=json_body(RESPONSES_BODY),
    responses=INFERENCE_ERRORS,
    dependencies=[Depends(BEARER)],
)
async def create_response(request: Request) -> Response:
    """OpenAI Responses, streaming or not, with Tollway's router fields as extras."""
    return Delegated(RESPONSES)


@router.get(
    "/v1/responses/{response_id}",
    responses={
        401: {"description": "Unauthorized - Missing or invalid API key."},
        404: {"description": "Not Found - Tollway stores no responses."},
    },
    dependencies=[Depends(BEARER)],
)
async def retrieve_response(response_id: str, request: Request) -> Response:
    """Always 404 for a valid key: responses are not stored (`store` is accepted, and
    nothing is kept)."""
    state = app_state(request)
    exchange_of(request).principal = await state.auth.inference(
        request.headers.get("authorization")
    )
    raise NotFound(
        f"response '{excerpt(response_id)}' not found: this gateway does not store responses",
        param="response_id",
        code="not_found",
    )
