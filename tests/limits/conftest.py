from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.billing.conftest import FakeClock
from tests.support.asgi import asgi_client
from tests.support.world import World
from tollway.app import create_app
from tollway.settings import Settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def api(
    world: World, database_url: str, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process on the test's database (limits counted in process)."""
    app = create_app(Settings(database_url=database_url), clock=clock)
    async with asgi_client(app) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
