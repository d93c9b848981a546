"""Liveness (`/health`: the process answers) and readiness (`/ready`: it can serve — the
registry is loaded and the database answers)."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from tollway.errors import DatabaseUnavailable, NoHealthyCandidate, NotFound, Unauthorized
from tollway.http.deps import app_state

router = APIRouter(tags=["Operations"])


@router.get("/")
async def root() -> dict[str, str]:
    """200: the gateway answers here (clients such as Claude Code probe the base URL with
    `HEAD /`). The inference API is under `/v1`, the console under `/console/`."""
    return {"service": "tollway", "api": "/v1", "console": "/console/"}


@router.head("/", include_in_schema=False)
async def root_head() -> Response:
    return Response(status_code=200, media_type="application/json")


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: 200 while the process answers, whatever its database does (restarting the
    process would not bring the database back)."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> dict[str, str]:
    """Readiness: 200 when the registry is loaded and the database answers within 2 s,
    else 503 with Retry-After (a load balancer sends traffic elsewhere meanwhile)."""
    state = app_state(request)
    if not state.registry.models:
        raise NoHealthyCandidate("not ready: no model in the registry")
    if not await state.db.ping(timeout_s=2.0):
        raise DatabaseUnavailable("not ready: database unavailable")
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of the whole server (every worker's, whichever one answers). Off
    unless TOLLWAY_METRICS_TOKEN is set; then the scraper sends it as a bearer token."""
    state = app_state(request)
    expected = state.settings.metrics_token
    if not expected:
        raise NotFound("not found")
    sent = request.headers.get("authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {expected}".encode()):
        raise Unauthorized("metrics need 'Authorization: Bearer <TOLLWAY_METRICS_TOKEN>'")
    # Reading every worker's files is blocking file I/O: off the event loop.
    body = await asyncio.to_thread(state.metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
