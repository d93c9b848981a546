"""Liveness/readiness."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from tollway.errors import NotFound, Unauthorized
from tollway.http.deps import app_state

router = APIRouter(tags=["Operations"])


@router.get("/health")
async def health() -> dict[str, str]:
    """200 once the process is ready to serve."""
    return {"status": "ok"}


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
