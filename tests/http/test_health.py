"""Liveness and readiness: unauthenticated, and readiness says whether requests can be served.
(The same endpoints during a real outage: tests/faults/test_database_outage.py.)"""

from __future__ import annotations

import httpx


async def test_alive_and_ready_without_credentials(api: httpx.AsyncClient) -> None:
    health = await api.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = await api.get("/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
