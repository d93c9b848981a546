from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.asgi import asgi_client
from tests.support.world import World
from tollway.app import create_app
from tollway.settings import Settings


@pytest.fixture
async def api(world: World, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=database_url, key_limit=5))
    async with asgi_client(app) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
