"""The OpenAI-compatible inference API (CONTRACT §5): parse, call the gateway, render."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tollway.errors import BadRequest
from tollway.gateway.auth import Principal
from tollway.gateway.request import InferenceRequest, parse_chat, parse_embeddings
from tollway.gateway.streaming import StreamRelay
from tollway.http.deps import app_state
from tollway.providers.registry import Registry
from tollway.state import AppState

router = APIRouter(tags=["Inference"])

_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


class RelayResponse(StreamingResponse):
    """A stream that settles its reservation however the response ends, even when the
    client went away before the first chunk was sent."""

    def __init__(self, relay: StreamRelay) -> None:
        super().__init__(
            relay.iterate(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
        self.relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.relay.finalize()


async def _authenticate(state: AppState, request: Request) -> Principal:
    with state.tracer.span("tollway.auth") as span:
        principal = await state.auth.inference(request.headers.get("authorization"))
        span.set("tollway.project_id", principal.project_id)
        span.set("tollway.key_id", principal.key_id)
    return principal


async def _serve(state: AppState, principal: Principal, parsed: InferenceRequest) -> Response:
    served = await state.gateway.handle(principal, parsed)
    if isinstance(served.result, StreamRelay):
        response: Response = RelayResponse(served.result)
        response.headers.update(served.headers)
        return response
    return Response(served.result, media_type="application/json", headers=served.headers)


@router.post("/v1/chat/completions", openapi_extra=_OPENAPI_BODY)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions, streaming or not, with Tollway's router fields."""
    state = app_state(request)
    principal = await _authenticate(state, request)
    return await _serve(state, principal, parse_chat(await request.body()))


@router.post("/v1/embeddings", openapi_extra=_OPENAPI_BODY)
async def embeddings(request: Request) -> Response:
    """OpenAI embeddings, with Tollway's router fields."""
    state = app_state(request)
    principal = await _authenticate(state, request)
    return await _serve(state, principal, parse_embeddings(await request.body()))


def list_models(registry: Registry, *, tags: list[str], eu_native: bool) -> dict[str, Any]:
    data = []
    for model in registry.models.values():
        if tags and not set(tags) <= set(model.tags):
            continue
        endpoints = [
            ep for ep in registry.endpoints_of(model.id) if ep.provider.eu_native or not eu_native
        ]
        if not endpoints:
            continue
        cheapest = min(endpoints, key=lambda ep: ep.pricing.input_token + ep.pricing.output_token)
        data.append(
            {
                "id": model.id,
                "object": "model",
                "created": model.created,
                "owned_by": "tollway",
                "description": model.description,
                "tags": list(model.tags),
                "context_size": model.context_size,
                "pricing": {
                    "input_token": float(cheapest.pricing.input_token),
                    "output_token": float(cheapest.pricing.output_token),
                    "currency": "EUR",
                },
                "providers": [ep.provider.slug for ep in endpoints],
            }
        )
    return {"object": "list", "data": data}


@router.get("/v1/models")
async def models(
    request: Request,
    tag: list[str] = Query(default=[]),  # noqa: B008
    eu_native: bool = False,
    currency: str = "EUR",
) -> dict[str, Any]:
    """The models this gateway serves, priced at their cheapest provider (EUR per 1M tokens)."""
    if currency.upper() != "EUR":
        raise BadRequest("currency: only EUR is supported", param="currency")
    return list_models(app_state(request).registry, tags=tag, eu_native=eu_native)
