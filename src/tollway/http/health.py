"""Liveness/readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from tollway.http.deps import app_state

router = APIRouter(tags=["Operations"])


@router.get("/health")
async def health() -> dict[str, str]:
    """200 once the process is ready to serve."""
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (one worker per scrape)."""
    return Response(app_state(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
