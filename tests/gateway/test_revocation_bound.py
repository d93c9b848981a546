"""A key deleted through another process (the CLI's `keys revoke`, another replica): without
credit leases the very next request is refused; with them (the default) the replica refuses
it from its first group commit that includes a request made with it — every request it
answered meanwhile is charged. What docs/api.md states as the bound."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.support.gateway import running_gateway, write_registry
from tests.support.mock_server import running_mock
from tests.support.world import World
from tollway.audit.actor import CLI
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


@pytest.mark.parametrize("leases", [True, False], ids=["leases", "no-leases"])
async def test_a_key_revoked_elsewhere_is_refused_within_the_stated_bound(
    world: World, database_url: str, tmp_path: Path, leases: bool
) -> None:
    member = await world.member("rex", "pr", credits_eur="1")
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {member.inference_key}"}
    with (
        running_mock() as mock_url,
        running_gateway(database_url, registry(tmp_path, mock_url), credit_leases=leases) as (
            base_url,
            _,
        ),
    ):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            for _ in range(3):  # the key is cached, a lease drawn
                assert (
                    await client.post("/chat/completions", json=body, headers=headers)
                ).is_success
            # Revoked through another connection pool, as by the CLI or another replica.
            await world.keys.delete(
                actor=CLI, user_id=member.user_id, name="pr-inf", calling_key_id=0
            )
            answered_after = 0
            for _ in range(500):
                response = await client.post("/chat/completions", json=body, headers=headers)
                if response.status_code == 401:
                    break
                assert response.status_code == 200, response.text
                answered_after += 1
            else:
                pytest.fail("the revoked key was still served after 500 requests")
            if not leases:
                assert answered_after == 0  # at once: the reservation re-checks the key
            await client.get(
                "/user/balance", headers={"Authorization": f"Bearer {member.management_key}"}
            )  # commits this process's queued charges
    async with world.db.read() as conn:
        served = await conn.execute(
            text("SELECT count(*) FROM usage_events WHERE status = 'success'")
        )
        # Every answer, before and after the revocation, is charged.
        assert served.scalar_one() == 3 + answered_after
        assert await ledger.ledger_mismatches(conn) == []
