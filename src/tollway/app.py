"""create_app(settings): the lifespan builds AppState; routers are mounted here, nowhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tollway import __version__
from tollway.clock import Clock, system_clock
from tollway.gateway.auth import Authenticator
from tollway.gateway.config_cache import ConfigCache
from tollway.http import health, management
from tollway.http.errors import install_error_handlers
from tollway.keys.service import KeyService
from tollway.projects.service import ProjectService
from tollway.providers.registry import Registry, load_registry
from tollway.settings import Settings
from tollway.state import AppState
from tollway.store.database import Database


def build_state(settings: Settings, registry: Registry, clock: Clock) -> AppState:
    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    projects = ProjectService(db, registry, clock)
    return AppState(
        settings=settings,
        clock=clock,
        db=db,
        registry=registry,
        auth=Authenticator(db, cache_size=settings.auth_cache_size),
        keys=KeyService(db, clock, key_limit=settings.key_limit),
        projects=projects,
        configs=ConfigCache(projects, ttl_s=settings.cache_ttl_s),
    )


def create_app(
    settings: Settings | None = None,
    *,
    registry: Registry | None = None,
    clock: Clock = system_clock,
) -> FastAPI:
    settings = settings or Settings()
    registry = registry or load_registry(settings.providers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = build_state(settings, registry, clock)
        app.state.tollway = state
        try:
            yield
        finally:
            await state.db.dispose()

    app = FastAPI(
        title="Tollway",
        version=__version__,
        description="A self-hosted LLM gateway: OpenAI-compatible inference with policy "
        "routing, and a Management API compatible with cortecs.ai.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(management.router)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker process builds its own app)."""
    return create_app()
