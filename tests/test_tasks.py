"""One owner for the process's background tasks: the `TaskTracker` on `AppState` holds the
recovery loop, the lease group commit, the request log writer and every one-shot task, and
nothing is left running after shutdown."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import running_gateway
from tests.support.mock_server import running_mock
from tests.support.world import World
from tollway.state import AppState
from tollway.tasks import TaskTracker


async def test_drain_waits_for_one_shot_tasks_and_close_stops_services(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = TaskTracker()
    finished: list[str] = []

    async def one_shot() -> None:
        await asyncio.sleep(0.05)
        finished.append("one-shot")

    async def service() -> None:
        await asyncio.Event().wait()  # runs until cancelled

    async def broken() -> None:
        raise RuntimeError("boom")

    tracker.spawn(one_shot(), "one-shot")
    tracker.spawn(service(), "service-loop", service=True)
    tracker.spawn(broken(), "broken")
    await tracker.drain(timeout_s=5)  # returns although the service loop still runs
    assert finished == ["one-shot"]
    assert tracker.running() == ["service-loop"]
    with caplog.at_level(logging.WARNING, logger="tollway.tasks"):
        await tracker.close()
    assert tracker.running() == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("broken failed" in m and "boom" in m for m in messages)
    assert any("service-loop still running at shutdown" in m for m in messages)


async def test_the_gateway_owns_its_background_tasks_and_stops_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"sqlite:///{tmp_path / 'gw.db'}"
    world = World(database_url)
    await world.migrate()
    await world.close()
    with running_mock() as mock_url:
        monkeypatch.setenv("TOLLWAY_MOCK_URL", mock_url)
        with running_gateway(database_url) as (base_url, app):
            state: AppState = app.state.tollway
            async with httpx.AsyncClient() as client:
                health = await client.get(f"{base_url.removesuffix('/v1')}/health")
            assert health.status_code == 200
            running = state.tasks.running()
            assert any(name.startswith("tollway-recovery-") for name in running), running
            assert any(name.startswith("tollway-leases-") for name in running), running
            assert "request-log-writer" in running, running
        assert state.tasks.running() == []
