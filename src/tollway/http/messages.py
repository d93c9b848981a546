"""Anthropic's Messages API: translated onto the same gateway path as chat completions
(`tollway.dialects.anthropic`), so policy, routing, fallback and metering are shared."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.datastructures import Headers
from starlette.responses import Response

from tollway.dialects.anthropic.request import parse_messages
from tollway.dialects.anthropic.response import to_message
from tollway.dialects.anthropic.stream import AnthropicEvents
from tollway.errors import Unauthorized
from tollway.gateway.streaming import StreamRelay
from tollway.http.deps import app_state, exchange_of
from tollway.http.inference import RelayResponse
from tollway.http.openapi import BEARER, INFERENCE_ERRORS, MESSAGES_BODY, json_body

router = APIRouter(tags=["Anthropic"])


def authorization(headers: Headers) -> str:
    """Anthropic clients send `x-api-key`; `Authorization: Bearer` works too."""
    key = headers.get("x-api-key")
    if key is not None:
        return f"Bearer {key}"
    header = headers.get("authorization")
    if header is None:
        raise Unauthorized("missing API key: send 'x-api-key' or 'Authorization: Bearer'")
    return header


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
    state = app_state(request)
    principal = await state.auth.inference(authorization(request.headers))
    tally = exchange_of(request).inference(principal, "messages")  # recorded from here on
    parsed = parse_messages(await request.body())
    tally.model, tally.stream = parsed.inference.model, parsed.inference.stream
    served = await state.gateway.handle(principal, parsed.inference, tally)
    result = served.result
    if isinstance(result, StreamRelay):
        events = AnthropicEvents(parsed.stop_sequences).translate(result.iterate())
        response: Response = RelayResponse(result, events)
        response.headers.update(served.headers)
        return response
    message = to_message(orjson.loads(result), parsed.stop_sequences)
    return Response(orjson.dumps(message), media_type="application/json", headers=served.headers)
