"""The model registry with this replica's live view of each endpoint, for operators
(``GET /v1/manage/models``; ``GET /v1/models`` is the public, OpenAI-shaped list)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from tollway.gateway.auth import Principal
from tollway.gateway.health import HealthBook
from tollway.http.deps import ManagementRoute, app_state, management_principal
from tollway.providers.registry import Registry, ResolvedEndpoint

router = APIRouter(route_class=ManagementRoute)
Caller = Annotated[Principal, Depends(management_principal)]


def render_endpoint(ep: ResolvedEndpoint, health: HealthBook) -> dict[str, Any]:
    live = health.snapshot(ep)
    return {
        "provider": ep.provider.slug,
        "provider_name": ep.provider.name,
        "upstream_model": ep.upstream_model,
        "pricing": ep.pricing.public(),
        "quantization": ep.endpoint.quantization,
        "eu_native": ep.provider.eu_native,
        "zero_data_retention": ep.provider.zero_data_retention,
        "ttft_ms": live["ttft_ms"],
        "tokens_per_second": live["tokens_per_second"],
        "samples": live["samples"],
        "consecutive_failures": live["consecutive_failures"],
        "circuit": health.circuit(ep),
    }


def render_models(registry: Registry, health: HealthBook) -> dict[str, Any]:
    return {
        "providers": [
            {
                "slug": p.slug,
                "name": p.name,
                "eu_native": p.eu_native,
                "zero_data_retention": p.zero_data_retention,
            }
            for p in registry.providers.values()
        ],
        "models": [
            {
                "id": m.id,
                "kind": m.kind,
                "description": m.description,
                "tags": list(m.tags),
                "context_size": m.context_size,
                "fallback": list(m.fallback),
                "endpoints": [render_endpoint(ep, health) for ep in registry.endpoints_of(m.id)],
            }
            for m in registry.models.values()
        ],
    }


@router.get(
    "/v1/manage/models",
    tags=["Models"],
    responses={
        401: {"description": "Unauthorized - Missing or invalid token."},
        403: {"description": "Forbidden - The provided API key is not a management key."},
    },
)
async def manage_models(request: Request, caller: Caller) -> dict[str, Any]:
    """Every model and provider endpoint with prices, flags, and the speed and circuit state
    this replica has measured (speed before any traffic = the registry's hints)."""
    state = app_state(request)
    return render_models(state.registry, state.health)
