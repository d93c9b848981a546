"""What the user sees of the money, read the way the user reads it."""

from __future__ import annotations

from decimal import Decimal

import httpx
from sqlalchemy import text

from tollway.store.database import Database


async def seen_balance(root: str, management_key: str) -> int:
    """The balance in credits as `GET /v1/user/balance` shows it — the serving process
    commits its credit leases' charges first, so every answered request is in it."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(
            f"{root}/v1/user/balance", headers={"Authorization": f"Bearer {management_key}"}
        )
    assert response.status_code == 200, response.text
    return int(Decimal(str(response.json()["current_balance"])) * 1_000_000)


async def open_request_holds(db: Database) -> int:
    """Open reservations of requests (a credit lease is not one: it lives while its
    process uses it)."""
    async with db.read() as conn:
        held = await conn.execute(
            text("SELECT count(*) FROM reservations WHERE request_id NOT LIKE 'lease-%'")
        )
        return int(held.scalar_one())
