"""A request whose reservation waits on a lock another transaction holds is bounded:
PostgreSQL's `lock_timeout` (SQLite's busy timeout) runs out and the client gets 503
database_unavailable with Retry-After — then, once the lock is gone, the same request is
served and the books balance. The lock is a real one, held by another connection."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.support.gateway import running_gateway, write_registry
from tests.support.locks import user_row_locked
from tests.support.mock_server import running_mock
from tests.support.world import World
from tollway.store import ledger


def registry(tmp_path: Path, url: str) -> Path:
    document = {
        "providers": [{"slug": "p", "name": "p", "base_url": url}],
        "models": [
            {
                "id": "m",
                "context_size": 4096,
                "endpoints": [
                    {
                        "provider": "p",
                        "upstream_model": "mock-chat",
                        "pricing": {"input_token": 1, "output_token": 1},
                    }
                ],
            }
        ],
    }
    return write_registry(tmp_path / "registry.yaml", document)


async def test_a_reserve_waiting_on_a_held_lock_is_a_bounded_503(
    world: World, database_url: str, tmp_path: Path
) -> None:
    member = await world.member("lou", "pl", credits_eur="1")
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {member.inference_key}"}
    with (
        running_mock() as mock_url,
        running_gateway(
            database_url,
            registry(tmp_path, mock_url),
            credit_leases=False,
            pg_lock_timeout_s=0.5,
            sqlite_busy_timeout_s=0.5,
        ) as (base_url, _),
    ):
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            assert (await client.post("/chat/completions", json=body, headers=headers)).is_success
            async with user_row_locked(database_url, member.user_id):
                # The holder lets go only after this answer: without a lock bound the
                # request would wait forever (the client gives up after 60 s).
                refused = await client.post("/chat/completions", json=body, headers=headers)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "database_unavailable"
            assert refused.headers["retry-after"] == "2"
            served = await client.post("/chat/completions", json=body, headers=headers)
            assert served.status_code == 200, served.text
            await asyncio.sleep(0.5)  # the refused request's release lands (retried)
    async with world.db.read() as conn:
        assert await ledger.ledger_mismatches(conn) == []
