"""The OpenAI-compatible inference API (docs/api.md): parse, call the gateway, render."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tollway.errors import NotFound
from tollway.gateway.auth import Principal
from tollway.gateway.request import InferenceRequest, parse_chat, parse_embeddings
from tollway.gateway.streaming import StreamRelay
from tollway.http.deps import app_state, exchange_of
from tollway.http.openapi import BEARER, CHAT_BODY, EMBEDDINGS_BODY, INFERENCE_ERRORS, json_body
from tollway.providers.registry import Model, Registry
from tollway.state import AppState

router = APIRouter(tags=["Inference"])
_AUTHENTICATED = [Depends(BEARER)]  # documents the bearer scheme; the handler authenticates


class RelayResponse(StreamingResponse):
    """A stream that settles its reservation however the response ends, even when the
    client went away before the first chunk was sent. ``content`` is the relay's chunks as
    translated into another dialect (default: the relay's own OpenAI chunks)."""

    def __init__(self, relay: StreamRelay, content: AsyncIterator[bytes] | None = None) -> None:
        super().__init__(
            relay.iterate() if content is None else content,
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


async def _serve(
    request: Request, endpoint: str, parse: Callable[[bytes], InferenceRequest]
) -> Response:
    """Authenticate, parse, serve; from authentication on, the request is tallied (it
    leaves a record in the request log whatever happens next)."""
    state = app_state(request)
    principal = await _authenticate(state, request)
    tally = exchange_of(request).inference(principal, endpoint)
    parsed = parse(await request.body())
    tally.model, tally.stream = parsed.model, parsed.stream
    served = await state.gateway.handle(principal, parsed, tally)
    if isinstance(served.result, StreamRelay):
        response: Response = RelayResponse(served.result)
        response.headers.update(served.headers)
        return response
    return Response(served.result, media_type="application/json", headers=served.headers)


# Each handler authenticates before it reads the body (within TOLLWAY_MAX_BODY_BYTES).
@router.post(
    "/v1/chat/completions",
    openapi_extra=json_body(CHAT_BODY),
    responses=INFERENCE_ERRORS,
    dependencies=_AUTHENTICATED,
)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions, streaming or not, with Tollway's router fields."""
    return await _serve(request, "chat.completions", parse_chat)


@router.post(
    "/v1/embeddings",
    openapi_extra=json_body(EMBEDDINGS_BODY),
    responses=INFERENCE_ERRORS,
    dependencies=_AUTHENTICATED,
)
async def embeddings(request: Request) -> Response:
    """OpenAI embeddings, with Tollway's router fields."""
    return await _serve(request, "embeddings", parse_embeddings)


def model_entry(registry: Registry, model: Model, *, eu_native: bool) -> dict[str, Any] | None:
    """The public description of one model, priced at its cheapest provider (None when no
    provider is left, e.g. none EU-native when that is asked for)."""
    endpoints = [
        ep for ep in registry.endpoints_of(model.id) if ep.provider.eu_native or not eu_native
    ]
    if not endpoints:
        return None
    cheapest = min(endpoints, key=lambda ep: ep.pricing.input_token + ep.pricing.output_token)
    return {
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


def list_models(registry: Registry, *, tags: list[str], eu_native: bool) -> dict[str, Any]:
    data = []
    for model in registry.models.values():
        if tags and not set(tags) <= set(model.tags):
            continue
        entry = model_entry(registry, model, eu_native=eu_native)
        if entry is not None:
            data.append(entry)
    return {"object": "list", "data": data}


@router.get("/v1/models")
async def models(
    request: Request,
    tag: list[str] = Query(default=[]),  # noqa: B008
    eu_native: bool = False,
    currency: Literal["EUR"] = "EUR",
) -> dict[str, Any]:
    """The models this gateway serves, priced at their cheapest provider (EUR per 1M tokens).
    Prices are in EUR only; any other `currency` is a 400."""
    return list_models(app_state(request).registry, tags=tag, eu_native=eu_native)


@router.get(
    "/v1/models/{model_id:path}",
    responses={
        401: {"description": "Unauthorized - Missing or invalid API key."},
        404: {"description": "Not Found - Unknown model."},
    },
    dependencies=_AUTHENTICATED,
)
async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    """One model, in the list's shape; any valid inference key may read it."""
    state = app_state(request)
    exchange_of(request).principal = await state.auth.inference(
        request.headers.get("authorization")
    )
    model = state.registry.model(model_id)
    entry = model_entry(state.registry, model, eu_native=False) if model is not None else None
    if entry is None:
        raise NotFound(f"model '{model_id[:200]}' not found", param="model", code="model_not_found")
    return entry
