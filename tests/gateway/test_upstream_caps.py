"""What an upstream may send is bounded: a whole answer's size (502 naming the cap) and a
stream's total duration (the stream ends with an error event naming the cap, and what
streamed is billed). Real upstreams: one answers with a huge body, one drips an event
inside every idle timeout, forever."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from tests.support.broken_upstream import behaved_upstream, dripping, huge
from tests.support.gateway import running_gateway, write_registry
from tests.support.world import World
from tollway.store import ledger


def document(url: str) -> dict[str, Any]:
    return {
        "providers": [{"slug": "wild", "name": "wild", "base_url": url, "timeout_s": 5}],
        "models": [
            {
                "id": "w",
                "context_size": 4096,
                "endpoints": [
                    {
                        "provider": "wild",
                        "upstream_model": "m",
                        "pricing": {"input_token": 1, "output_token": 1},
                    }
                ],
            }
        ],
    }


BODY = {"model": "w", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


async def test_a_huge_answer_is_refused_naming_the_cap(
    world: World, database_url: str, tmp_path: Path
) -> None:
    member = await world.member("max", "pm", credits_eur="1")
    registry = tmp_path / "registry.yaml"
    with behaved_upstream(huge(3 * 1024 * 1024)) as (url, upstream):
        write_registry(registry, document(url))
        with running_gateway(database_url, registry, upstream_max_body_bytes=1024 * 1024) as (
            base_url,
            _,
        ):
            async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
                refused = await client.post(
                    "/chat/completions",
                    json=BODY,
                    headers={"Authorization": f"Bearer {member.inference_key}"},
                )
        assert upstream.requests == 1
    assert refused.status_code == 502, refused.text
    message = refused.json()["error"]["message"]
    assert "answer larger than the 1048576-byte cap" in message
    async with world.db.read() as conn:
        assert await ledger.ledger_mismatches(conn) == []
        charged = await conn.execute(text("SELECT count(*) FROM ledger WHERE kind = 'charge'"))
        assert charged.scalar_one() == 0  # nothing served, nothing charged


async def test_a_never_ending_stream_is_cut_at_the_cap_and_what_streamed_is_billed(
    world: World, database_url: str, tmp_path: Path
) -> None:
    member = await world.member("max", "pm", credits_eur="1")
    registry = tmp_path / "registry.yaml"
    with behaved_upstream(dripping(0.05)) as (url, _):
        write_registry(registry, document(url))
        with running_gateway(
            database_url, registry, upstream_max_stream_s=1.0, credit_leases=False
        ) as (base_url, _):
            async with (
                httpx.AsyncClient(base_url=base_url, timeout=60) as client,
                client.stream(
                    "POST",
                    "/chat/completions",
                    json={**BODY, "stream": True},
                    headers={"Authorization": f"Bearer {member.inference_key}"},
                ) as response,
            ):
                assert response.status_code == 200
                events = [
                    line.removeprefix("data: ")
                    async for line in response.aiter_lines()
                    if line.startswith("data: ")
                ]
    contents = [e for e in events if '"delta"' in e]
    assert contents, events[:3]  # it did stream (a drip every 50 ms)
    last = orjson.loads(events[-1])
    assert "stream exceeded the 1 s duration cap" in last["error"]["message"]
    async with world.db.read() as conn:
        assert await ledger.ledger_mismatches(conn) == []
        row = (
            await conn.execute(
                text("SELECT status, completion_tokens, cost_credits FROM usage_events")
            )
        ).one()
        held = await conn.execute(text("SELECT count(*) FROM reservations"))
        assert held.scalar_one() == 0  # the reservation is closed, not held forever
    status, completion, cost = row
    assert status == "error" and completion >= len(contents) and cost >= completion
