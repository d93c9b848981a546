"""Anthropic's Messages API: translated onto the same gateway path as chat completions
(`tollway.dialects.anthropic`), so policy, routing, fallback and metering are shared. Declared
here for the OpenAPI document; served as plain ASGI by `http/fastpath.py`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from tollway.http.fastpath import MESSAGES, Delegated
from tollway.http.openapi import BEARER, INFERENCE_ERRORS, MESSAGES_BODY, json_body

router = APIRouter(tags=["Anthropic"])


# Authenticated before the body is read (within TOLLWAY_MAX_BODY_BYTES).
@router.post(
    "/v1/messages",
    openapi_extra=json_body(MESSAGES_BODY),
    responses=INFERENCE_ERRORS,
    dependencies=[Depends(BEARER)],
)
async def messages(request: Request) -> Response:
    """Anthropic Messages, streaming or not, with Tollway's router fields as extras. The
    `anthropic-version` header is accepted whatever its value."""
    return Delegated(MESSAGES)
