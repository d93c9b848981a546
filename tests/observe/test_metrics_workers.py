"""`tollway serve --workers 2` as a real process: whichever worker answers a scrape, the
counters are the whole server's — equal to the requests sent — also after a worker is killed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import httpx

from tests.observe.conftest import Scrape, samples, total
from tests.support.processes import serve_process
from tests.support.world import World

SCRAPES = 6
TOKEN = "scrape-secret"
_PID = re.compile(r"_(\d+)\.db$")


def _pids(directory: Path, prefix: str) -> set[int]:
    return {int(m.group(1)) for f in directory.glob(f"{prefix}_*.db") if (m := _PID.search(f.name))}


async def _send(root: str, key: str, count: int) -> tuple[int, int]:
    """``count`` requests, 8 at a time, each on a new connection (so the kernel spreads them
    over the workers); every fourth names an unknown model. Returns (served, refused)."""
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_keepalive_connections=0)
    served = refused = 0
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(i: int) -> int:
            model = "nope" if i % 4 == 3 else "chat-b"
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            response = await client.post(f"{root}/v1/chat/completions", json=body, headers=headers)
            return response.status_code

        for start in range(0, count, 8):
            codes = await asyncio.gather(*(one(i) for i in range(start, min(start + 8, count))))
            served += codes.count(200)
            refused += codes.count(404)
            assert set(codes) <= {200, 404}, codes
    return served, refused


def _metrics_directory(tmp_path: Path) -> Path:
    [directory] = tmp_path.glob("tollway-metrics-*")
    return directory


def _gone(path: Path) -> bool:
    return not path.exists()


def _scrape(root: str) -> Scrape:
    response = httpx.get(f"{root}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return samples(response.text)


def _assert_counts(root: str, *, served: int, refused: int, charged: int) -> None:
    for _ in range(SCRAPES):  # each scrape may be answered by another worker
        scrape = _scrape(root)
        assert total(scrape, "tollway_requests_total") == served + refused
        assert total(scrape, "tollway_requests_total", status="success") == served
        assert total(scrape, "tollway_requests_total", status="404") == refused
        assert total(scrape, "tollway_request_duration_seconds_count") == served
        assert total(scrape, "tollway_upstream_duration_seconds_count") == served
        assert total(scrape, "tollway_meter_duration_seconds_count", operation="reserve") == served
        assert total(scrape, "tollway_meter_duration_seconds_count", operation="settle") == served
        assert total(scrape, "tollway_credits_charged_total") == charged
        assert total(scrape, "tollway_tokens_total", kind="completion") > 0
        assert total(scrape, "tollway_open_reservations") == 0


async def test_counters_add_up_over_two_workers(
    world: World, database_url: str, registry_path: Path, tmp_path: Path
) -> None:
    member = await world.member("wes", "pw", credits_eur="10")
    before = await world.accounts.balance_credits(member.user_id)
    env = {
        "TOLLWAY_WORKERS": "2",
        "TOLLWAY_METRICS_TOKEN": TOKEN,
        "TOLLWAY_PROVIDERS": str(registry_path),
        "TOLLWAY_LOG_LEVEL": "warning",
        "TMPDIR": str(tmp_path),  # where `tollway serve` makes its metrics directory
        # Charged before each answer (no credit lease), so the balance read at once is the
        # metric's figure, even for the worker killed below.
        "TOLLWAY_CREDIT_LEASES": "0",
    }
    with serve_process(database_url, **env) as (root, process):
        directory = _metrics_directory(tmp_path)
        served = refused = 0
        deadline = time.monotonic() + 60
        # Until both workers have served some: a per-worker registry would then be short.
        while len(_pids(directory, "counter")) < 2 or served + refused < 24:
            assert time.monotonic() < deadline, "the requests never reached both workers"
            s, r = await _send(root, member.inference_key, 8)
            served, refused = served + s, refused + r
        charged = before - await world.accounts.balance_credits(member.user_id)
        assert charged > 0
        _assert_counts(root, served=served, refused=refused, charged=charged)

        # A worker killed outright: its counts stay, its gauges go, uvicorn starts another.
        workers = _pids(directory, "gauge_livesum")
        assert len(workers) == 2
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        while (
            victim in _pids(directory, "gauge_livesum")
            or len(_pids(directory, "gauge_livesum")) < 2
        ):
            assert time.monotonic() < deadline + 60, "no replacement worker"
            _scrape(root)  # a scrape forgets the dead worker's gauges
            await asyncio.sleep(0.2)
        _assert_counts(root, served=served, refused=refused, charged=charged)
        s, r = await _send(root, member.inference_key, 16)
        charged = before - await world.accounts.balance_credits(member.user_id)
        _assert_counts(root, served=served + s, refused=refused + r, charged=charged)
        assert process.poll() is None
    assert _gone(directory), "the metrics directory is removed when the server stops"
