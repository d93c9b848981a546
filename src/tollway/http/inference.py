"""The OpenAI-compatible inference API (docs/api.md): the routes of the OpenAPI document (the
inference POSTs are served by `http/fastpath.py`) and the models list."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from tollway.errors import NotFound, excerpt
from tollway.http.deps import app_state, exchange_of
from tollway.http.fastpath import CHAT_COMPLETIONS, EMBEDDINGS, Delegated
from tollway.http.openapi import BEARER, CHAT_BODY, EMBEDDINGS_BODY, INFERENCE_ERRORS, json_body
from tollway.providers.registry import Model, Registry

router = APIRouter(tags=["Inference"])
_AUTHENTICATED = [Depends(BEARER)]  # documents the bearer scheme; the handler authenticates


# Declared here for the OpenAPI document; their POSTs are served as plain ASGI by the edge
# (`http/fastpath.py`), which authenticates before it reads the body (within
# TOLLWAY_MAX_BODY_BYTES).
@router.post(
    "/v1/chat/completions",
    openapi_extra=json_body(CHAT_BODY),
    responses=INFERENCE_ERRORS,
    dependencies=_AUTHENTICATED,
)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions, streaming or not, with Tollway's router fields."""
    return Delegated(CHAT_COMPLETIONS)


@router.post(
    "/v1/embeddings",
    openapi_extra=json_body(EMBEDDINGS_BODY),
    responses=INFERENCE_ERRORS,
    dependencies=_AUTHENTICATED,
)
async def embeddings(request: Request) -> Response:
    """OpenAI embeddings, with Tollway's router fields."""
    return Delegated(EMBEDDINGS)


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
        "pricing": cheapest.pricing.public(),
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
        raise NotFound(
            f"model '{excerpt(model_id)}' not found", param="model", code="model_not_found"
        )
    return entry
