"""Anthropic's Messages API: translated onto the same gateway path as chat completions
(`tollway.dialects.anthropic`), so policy, routing, fallback and metering are shared."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.datastructures import Headers
from starlette.responses import Response

from tollway.dialects.anthropic.request import parse_messages
from tollway.dialects.anthropic.response import to_message
from tollway.dialects.anthropic.stream import AnthropicEvents
from tollway.errors import Unauthorized
from tollway.gateway.streaming import StreamRelay
from tollway.http.deps import app_state
from tollway.http.inference import RelayResponse

router = APIRouter(tags=["Anthropic"])

_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def authorization(headers: Headers) -> str:
    """Anthropic clients send `x-api-key`; `Authorization: Bearer` works too."""
    key = headers.get("x-api-key")
    if key is not None:
        return f"Bearer {key}"
    header = headers.get("authorization")
    if header is None:
        raise Unauthorized("missing API key: send 'x-api-key' or 'Authorization: Bearer'")
    return header


@router.post("/v1/messages", openapi_extra=_OPENAPI_BODY)
async def messages(request: Request) -> Response:
    """Anthropic Messages, streaming or not, with Tollway's router fields as extras. The
    `anthropic-version` header is accepted whatever its value."""
    state = app_state(request)
    principal = await state.auth.inference(authorization(request.headers))
    parsed = parse_messages(await request.body())
    served = await state.gateway.handle(principal, parsed.inference)
    result = served.result
    if isinstance(result, StreamRelay):
        events = AnthropicEvents(parsed.stop_sequences).translate(result.iterate())
        response: Response = RelayResponse(result, events)
        response.headers.update(served.headers)
        return response
    message = to_message(orjson.loads(result), parsed.stop_sequences)
    return Response(orjson.dumps(message), media_type="application/json", headers=served.headers)
