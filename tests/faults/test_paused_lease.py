"""A replica paused (SIGSTOP) past the stale time is taken for dead: another replica's
sweeper gives its credit lease back to the balance. When it resumes, the requests it
answers against the lease it still believes in are charged from the balance instead —
every answer charged once, the books exact, nothing only in a log line."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from tests.faults.conftest import HOLDS_GONE_WITHIN_S, chat, check_books, funded
from tests.support.processes import serve_process
from tests.support.world import World

RECOVERY = {
    "TOLLWAY_HEARTBEAT_S": "0.2",
    "TOLLWAY_RESERVATION_STALE_S": "1",
    # The lease outlives the pause in the paused process's memory (not given back as idle).
    "TOLLWAY_LEASE_IDLE_S": "600",
}


async def _count(world: World, sql: str) -> int:
    async with world.db.read() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def _served(client: httpx.AsyncClient, root: str, headers: dict[str, str], n: int) -> int:
    total = 0
    for _ in range(n):
        response = await client.post(
            f"{root}/v1/chat/completions", json=chat(max_tokens=16), headers=headers
        )
        assert response.status_code == 200, response.text
        total += int(response.json()["usage"]["total_tokens"])  # 1 credit per token
    return total


async def _until(world: World, sql: str, expected: int) -> None:
    deadline = time.monotonic() + HOLDS_GONE_WITHIN_S
    while await _count(world, sql) != expected:
        assert time.monotonic() < deadline, f"{sql} never reached {expected}"
        await asyncio.sleep(0.05)


async def test_a_paused_replica_whose_lease_was_taken_for_dead_charges_its_late_answers(
    world: World, database_url: str, registry_path: Path
) -> None:
    alice = await funded(world)
    headers = {"Authorization": f"Bearer {alice.inference_key}"}
    env = {"TOLLWAY_PROVIDERS": str(registry_path), **RECOVERY}
    leases = "SELECT count(*) FROM reservations WHERE request_id LIKE 'lease-%'"
    with (
        serve_process(database_url, **env) as (root, paused),
        serve_process(database_url, **env),  # the other replica, whose sweeper acts
    ):
        async with httpx.AsyncClient(timeout=30) as client:
            before = await _served(client, root, headers, 10)
            await _until(world, "SELECT count(*) FROM usage_events", 10)  # committed
            assert await _count(world, leases) == 1
            os.kill(paused.pid, signal.SIGSTOP)
            try:
                await _until(world, leases, 0)  # taken for dead: the lease given back
            finally:
                os.kill(paused.pid, signal.SIGCONT)
            after = await _served(client, root, headers, 10)  # against the lost lease
    with serve_process(database_url, **env) as (root, _):  # both stopped: leases given back
        books = await check_books(world, alice, root, "paused-lease-taken-for-dead")
    assert books.served == 20
    assert books.balance_drop == books.charged == before + after  # charged, once each
    assert await _count(world, "SELECT count(*) FROM ledger WHERE kind = 'shortfall'") == 0
