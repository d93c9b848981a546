"""Media parts have an allowance, and usage an upstream reports beyond the reservation is
charged in full as far as the balance allows; the rest is a shortfall row in the ledger —
never silent, never an overdraft, balance = Σ ledger. A real upstream reports the usage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.observe.conftest import samples, total
from tests.support.broken_upstream import behaved_upstream, reporting_usage
from tests.support.gateway import running_gateway, write_registry
from tests.support.money import seen_balance
from tests.support.world import World
from tollway.gateway.request import VIDEO_PART_TOKENS, media_allowance, parse_chat
from tollway.store import ledger as ledger_store

PROMPT, COMPLETION = 100_000, 6  # what the upstream bills, whatever was sent


def document(url: str) -> dict[str, Any]:
    return {
        "providers": [{"slug": "vision", "name": "vision", "base_url": url}],
        "models": [
            {
                "id": "vid",
                "context_size": 200_000,
                "endpoints": [
                    {
                        "provider": "vision",
                        "upstream_model": "m",
                        # 1 credit per token: the charge is the token count.
                        "pricing": {"input_token": 1, "output_token": 1},
                    }
                ],
            }
        ],
    }


def video_request(stream: bool) -> dict[str, Any]:
    return {
        "model": "vid",
        "max_tokens": COMPLETION,
        "stream": stream,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what happens?"},
                    {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}},
                ],
            }
        ],
    }


def test_every_media_part_has_an_allowance() -> None:
    assert media_allowance("text") == 0
    assert media_allowance("image_url") == 8192
    assert media_allowance("video_url") == VIDEO_PART_TOKENS
    assert media_allowance("audio_url") == media_allowance("input_audio") == 32768
    assert media_allowance("file") == media_allowance("document_url") == 32768
    raw = httpx.Request("POST", "/", json=video_request(False)).content
    assert parse_chat(raw).prompt_upper_bound == len(raw) + VIDEO_PART_TOKENS


async def rows_of(world: World, user_id: str) -> list[tuple[str, str, int, str | None]]:
    async with world.db.read() as conn:
        rows = await conn.execute(
            text(
                "SELECT entry_id, kind, amount_credits, note FROM ledger"
                " WHERE user_id = :u AND kind <> 'topup' ORDER BY id"
            ),
            {"u": user_id},
        )
        return [(str(r[0]), str(r[1]), int(r[2]), r[3]) for r in rows]


async def assert_books_balance(world: World) -> None:
    async with world.db.read() as conn:
        assert await ledger_store.ledger_mismatches(conn) == []
        negative = await conn.execute(text("SELECT count(*) FROM users WHERE balance_credits < 0"))
        assert negative.scalar_one() == 0


async def usage_cost(world: World, user_id: str) -> list[int]:
    async with world.db.read() as conn:
        rows = await conn.execute(
            text("SELECT cost_credits FROM usage_events WHERE user_id = :u"), {"u": user_id}
        )
        return [int(r[0]) for r in rows]


@pytest.mark.parametrize("leases", [True, False], ids=["leases", "no-leases"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
# With leases, 1 EUR: a lease (a quarter of the balance) covers the excess; 0.3 EUR: the lease
# covers part of it and the balance the rest.
@pytest.mark.parametrize("eur", ["1", "0.3"])
async def test_usage_beyond_the_reservation_is_charged_in_full(
    world: World, database_url: str, tmp_path: Path, leases: bool, stream: bool, eur: str
) -> None:
    member = await world.member("vera", "pv", credits_eur=eur)
    credits = int(float(eur) * 1_000_000)
    registry = tmp_path / "registry.yaml"
    with behaved_upstream(reporting_usage(PROMPT, COMPLETION)) as (url, _):
        write_registry(registry, document(url))
        with running_gateway(database_url, registry, credit_leases=leases) as (base_url, _app):
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
                answer = await client.post(
                    "/chat/completions",
                    json=video_request(stream),
                    headers={"Authorization": f"Bearer {member.inference_key}"},
                )
                assert answer.status_code == 200, answer.text
                if stream:
                    assert answer.text.rstrip().endswith("data: [DONE]")
            root = base_url.removesuffix("/v1")
            # Before: the charge was capped at the reservation (~65,700 credits here).
            assert await seen_balance(root, member.management_key) == credits - 100_006
    assert await usage_cost(world, member.user_id) == [100_006]
    rows = await rows_of(world, member.user_id)
    assert not [r for r in rows if r[1] == "shortfall"]
    from_balance = [r for r in rows if r[0].startswith("overrun:")]
    # Without a lease the excess comes from the balance (with one, from what the lease
    # holds first: how much depends on its background top-ups).
    assert bool(from_balance) or leases
    await assert_books_balance(world)


@pytest.mark.parametrize("leases", [True, False], ids=["leases", "no-leases"])
async def test_usage_the_balance_cannot_cover_is_a_recorded_shortfall(
    world: World, database_url: str, tmp_path: Path, leases: bool
) -> None:
    # 0.07 EUR = 70,000 credits: enough for the reservation (the body + the video's
    # allowance + 6), not for the 100,006 the upstream bills.
    member = await world.member("vera", "pv", credits_eur="0.07")
    registry = tmp_path / "registry.yaml"
    with behaved_upstream(reporting_usage(PROMPT, COMPLETION)) as (url, _):
        write_registry(registry, document(url))
        with running_gateway(
            database_url, registry, credit_leases=leases, metrics_token="scrape"
        ) as (base_url, _app):
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
                answer = await client.post(
                    "/chat/completions",
                    json=video_request(False),
                    headers={"Authorization": f"Bearer {member.inference_key}"},
                )
                assert answer.status_code == 200, answer.text
            root = base_url.removesuffix("/v1")
            assert await seen_balance(root, member.management_key) == 0  # all of it, no more
            async with httpx.AsyncClient() as client:
                scraped = await client.get(
                    f"{root}/metrics", headers={"Authorization": "Bearer scrape"}
                )
            scrape = samples(scraped.text)
            # What an operator alerts on: served usage that went unpaid.
            assert total(scrape, "tollway_credits_uncharged_total", model="vid") == 30_006
            assert total(scrape, "tollway_credits_charged_total", model="vid") == 70_000
    assert await usage_cost(world, member.user_id) == [70_000]
    shortfalls = [r for r in await rows_of(world, member.user_id) if r[1] == "shortfall"]
    assert len(shortfalls) == 1
    entry, _, amount, note = shortfalls[0]
    assert entry.startswith("shortfall:") and amount == 0
    assert note is not None and note.startswith("30006 credits not charged")
    await assert_books_balance(world)
