"""The database goes away while streams and non-streamed calls are in flight, and comes
back: answered clients are charged once the database is back, refused clients get a clean
503, no credit stays held, and nobody restarts anything. Both backends: PostgreSQL is a
private cluster that the test stops; SQLite's outage is another process holding the write
lock past the busy timeout (see `tests/support/outage.py`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.conftest import (
    HOLDS_GONE_WITHIN_S,
    chat,
    check_books,
    funded,
    open_holds,
    wait_for_holds,
)
from tests.observe.conftest import samples, total
from tests.support.gateway import running_gateway
from tests.support.outage import Outage, database_outage, reconnected
from tests.support.world import World
from tollway.state import AppState

STREAMS = 6
CALLS = 6
REFUSED = 6  # half of them streams


@pytest.fixture(params=["sqlite", "postgres"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    with database_outage(str(request.param), tmp_path) as o:
        yield o


async def eventually_status(
    client: httpx.AsyncClient, url: str, status: int, **kw: object
) -> float:
    """Seconds until `url` answers `status` (bounded)."""
    started = time.monotonic()
    while True:
        response = await client.request(kw.pop("method", "GET"), url, **kw)  # type: ignore[arg-type]
        if response.status_code == status:
            return time.monotonic() - started
        assert time.monotonic() - started < HOLDS_GONE_WITHIN_S, response.text
        await asyncio.sleep(0.1)


async def drained(state: AppState, timeout_s: float) -> None:
    """Wait (bounded) until no settlement is pending in this process."""
    started = time.monotonic()
    while len(state.meter.pending):
        assert time.monotonic() - started < timeout_s, f"{len(state.meter.pending)} pending"
        await asyncio.sleep(0.05)


async def test_a_database_outage_under_streams_and_calls_loses_no_money(
    outage: Outage, registry_path: Path
) -> None:
    world = World(outage.url)
    await world.migrate()
    alice = await funded(world)
    headers = {"Authorization": f"Bearer {alice.inference_key}"}
    is_sqlite = outage.url.startswith("sqlite")
    # The database-reservation path (one hold per request, counted below); the credit
    # leases' outage is the next test.
    with running_gateway(
        outage.url,
        registry_path,
        sqlite_busy_timeout_s=0.5,
        heartbeat_s=0.5,
        credit_leases=False,
    ) as (base_url, app):
        state: AppState = app.state.tollway
        root = base_url.removesuffix("/v1")
        url = f"{base_url}/chat/completions"
        async with httpx.AsyncClient(timeout=60) as client:
            warm = await client.post(url, json=chat(max_tokens=3), headers=headers)
            assert warm.status_code == 200  # the key is cached: no lookup during the outage
            started = asyncio.Event()
            first_chunks = 0

            async def stream() -> str:
                nonlocal first_chunks
                request = client.build_request("POST", url, json=chat(stream=True), headers=headers)
                response = await client.send(request, stream=True)
                assert response.status_code == 200
                lines: list[str] = []
                async for line in response.aiter_lines():
                    if not lines:
                        first_chunks += 1
                        if first_chunks == STREAMS:
                            started.set()
                    lines.append(line)
                return "\n".join(lines)

            streams = [asyncio.create_task(stream()) for _ in range(STREAMS)]
            calls = [
                asyncio.create_task(client.post(url, json=chat("chat-slow"), headers=headers))
                for _ in range(CALLS)
            ]
            await asyncio.wait_for(started.wait(), 30)
            await wait_for_holds(world, STREAMS + CALLS, 30)  # every request holds credits
            outage.down()

            # During the outage: refused cleanly (no 500, no reset), alive, not ready.
            refused = await asyncio.gather(
                *(
                    client.post(url, json=chat(stream=i % 2 == 0), headers=headers)
                    for i in range(REFUSED)
                )
            )
            for response in refused:
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "2"
                assert response.json()["error"]["code"] == "database_unavailable"
            assert (await client.get(f"{root}/health")).status_code == 200
            ready = await client.get(f"{root}/ready")
            assert ready.status_code == 503
            assert isinstance(ready.json()["error"], str)
            if not is_sqlite:  # SQLite still reads while locked: this one is PostgreSQL's
                balance = await client.get(
                    f"{root}/v1/user/balance",
                    headers={"Authorization": f"Bearer {alice.management_key}"},
                )
                assert balance.status_code == 503
                assert isinstance(balance.json()["error"], str)

            # The requests in flight are answered in full, although none can be settled yet.
            for text in await asyncio.gather(*streams):
                assert text.rstrip().endswith("data: [DONE]")
            for response in await asyncio.gather(*calls):
                assert response.status_code == 200, response.text
                assert response.json()["choices"][0]["message"]["content"]
            # Every settlement deferred, and each refused request's undo (its reservation
            # may have committed before the connection failed: released once it is back).
            assert len(state.meter.pending) == STREAMS + CALLS + REFUSED

            outage.up()
            back = time.monotonic()
            await reconnected(world.db)
            landed = await wait_for_holds(world, 0, HOLDS_GONE_WITHIN_S)
            # The holds are gone once the last settlement commits; the retrier forgets it
            # just after, and an undo whose reservation never committed held nothing.
            await drained(state, HOLDS_GONE_WITHIN_S)
            ready_after = await eventually_status(client, f"{root}/ready", 200)
            serving_after = await eventually_status(
                client, url, 200, method="POST", json=chat(max_tokens=3), headers=headers
            )
            recovered = time.monotonic() - back
        books = await check_books(world, alice, root, "db-outage")
    assert books.served == 1 + STREAMS + CALLS + 1  # warm-up, the answered, the probe after
    assert await open_holds(world) == 0
    # The credits metric counts each deferred settlement once, when it lands: the books'.
    scrape = samples(state.metrics.render().decode())
    assert total(scrape, "tollway_credits_charged_total") == books.charged
    assert total(scrape, "tollway_credits_uncharged_total") == 0
    print(
        f"\nOUTAGE {'sqlite' if is_sqlite else 'postgres'}: holds gone {landed:.2f} s after "
        f"the database was back; ready after {ready_after:.2f} s; serving after "
        f"{serving_after:.2f} s; all within {recovered:.2f} s"
    )
    await world.close()


async def test_a_database_outage_with_credit_leases_loses_no_money(
    outage: Outage, registry_path: Path
) -> None:
    """Requests reserved against a credit lease when the database goes away: those in flight
    are answered and charged once it is back (their group commit retried); those arriving
    meanwhile are served from the lease or refused with a clean 503 — never anything else;
    the lease goes back and the books balance."""
    world = World(outage.url)
    await world.migrate()
    alice = await funded(world)
    headers = {"Authorization": f"Bearer {alice.inference_key}"}
    settings = {"sqlite_busy_timeout_s": 0.5, "heartbeat_s": 0.5, "lease_idle_s": 0.5}
    with running_gateway(outage.url, registry_path, **settings) as (base_url, app):
        state: AppState = app.state.tollway
        assert state.meter.leases is not None
        root = base_url.removesuffix("/v1")
        url = f"{base_url}/chat/completions"
        async with httpx.AsyncClient(timeout=60) as client:
            warm = await client.post(url, json=chat(max_tokens=3), headers=headers)
            assert warm.status_code == 200  # the key cached, the lease drawn
            calls = [
                asyncio.create_task(client.post(url, json=chat("chat-slow"), headers=headers))
                for _ in range(CALLS)
            ]
            await asyncio.sleep(0.5)  # the calls are in flight, reserved in memory
            outage.down()
            during = await asyncio.gather(
                *(
                    client.post(url, json=chat(max_tokens=5), headers=headers)
                    for _ in range(REFUSED)
                )
            )
            assert {r.status_code for r in during} <= {200, 503}, [r.text for r in during]
            for response in await asyncio.gather(*calls):
                assert response.status_code == 200, response.text
            await asyncio.sleep(0.2)  # at least one group commit tried, and failed
            outage.up()
            await reconnected(world.db)
            await eventually_status(
                client, url, 200, method="POST", json=chat(max_tokens=3), headers=headers
            )
        books = await check_books(world, alice, root, "db-outage-leases")
    answered = 1 + CALLS + sum(r.status_code == 200 for r in during) + 1
    assert books.served == answered
    assert await open_holds(world) == 0
    await world.close()
