"""Anthropic's Messages API: translated onto the same gateway path as chat completions
(`tollway.dialects.anthropic`), so policy, routing, fallback and metering are shared. Declared
here for the OpenAPI document; served as plain ASGI by `http/fastpath.py`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.responses import Response

from tollway.http.fastpath import COUNT_TOKENS, MESSAGES, Delegated
from tollway.http.openapi import (
    BEARER,
    COUNT_TOKENS_BODY,
    INFERENCE_ERRORS,
    MESSAGES_BODY,
    json_body,
)

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
    `anthropic-version` and `anthropic-beta` headers and `?beta=true` are accepted whatever
    their value."""
    return Delegated(MESSAGES)


class TokenCount(BaseModel):
    input_tokens: int


@router.post(
    "/v1/messages/count_tokens",
    openapi_extra=json_body(COUNT_TOKENS_BODY),
    response_model=TokenCount,
    responses={
        **{k: v for k, v in INFERENCE_ERRORS.items() if k in (400, 401, 404, 413)},
        429: {"description": "Too Many Requests - A rate limit is exhausted."},
    },
    dependencies=[Depends(BEARER)],
)
async def count_tokens(request: Request) -> Response:
    """The gateway's own count of the prompt tokens of a Messages request (the count it
    bills by when an upstream reports none). Free of charge, rate-limited in counters apart
    from inference; `max_tokens` is not needed."""
    return Delegated(COUNT_TOKENS)
