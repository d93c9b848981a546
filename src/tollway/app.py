"""create_app(settings): the lifespan builds AppState; routers are mounted here, nowhere else."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tollway import __version__
from tollway.accounts.service import AccountService
from tollway.audit.service import AuditService
from tollway.billing.budgets import BudgetService
from tollway.billing.leases import Leases
from tollway.billing.meter import Meter
from tollway.billing.recovery import Recovery
from tollway.billing.usage import UsageService
from tollway.clock import Clock, system_clock
from tollway.console.apidocs import mount_api_docs
from tollway.console.routes import mount_console
from tollway.gateway.auth import Authenticator
from tollway.gateway.config_cache import ConfigCache
from tollway.gateway.health import HealthBook
from tollway.gateway.observed import ObservedMeter
from tollway.gateway.pipeline import Gateway
from tollway.gateway.ratelimit import RateLimiter
from tollway.http import (
    audit,
    budgets,
    health,
    inference,
    management,
    messages,
    models,
    rate_limits,
    requests,
    responses,
    sso,
    usage,
)
from tollway.http.edge import Edge
from tollway.http.errors import install_error_handlers
from tollway.http.openapi import install_openapi
from tollway.ids import RequestIds, new_id
from tollway.keys.service import KeyService
from tollway.limits.service import RateLimitIndex, RateLimitService
from tollway.observe.metrics import Metrics
from tollway.observe.requests import RequestLogService
from tollway.observe.tracing import Tracer, build_tracer
from tollway.observe.writer import RequestLogWriter
from tollway.projects.service import ProjectService
from tollway.providers.redact import Redactor
from tollway.providers.registry import Registry, load_registry
from tollway.providers.upstream import UpstreamClient
from tollway.settings import Settings
from tollway.sso.oidc import OidcClient
from tollway.sso.sessions import ConsoleSessions
from tollway.state import AppState
from tollway.store.database import Database
from tollway.tasks import TaskTracker


def build_state(
    settings: Settings, registry: Registry, clock: Clock, tracer: Tracer | None = None
) -> AppState:
    """Build every long-lived object once; must run inside the event loop (lifespan)."""
    db = Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        sqlite_busy_timeout_s=settings.sqlite_busy_timeout_s,
        pg_statement_timeout_s=settings.pg_statement_timeout_s,
        pg_lock_timeout_s=settings.pg_lock_timeout_s,
    )
    projects = ProjectService(db, registry, clock)
    keys = KeyService(db, clock, key_limit=settings.key_limit)
    auth = Authenticator(keys, cache_size=settings.auth_cache_size)
    configs = ConfigCache(projects, ttl_s=settings.cache_ttl_s)
    instance_id = new_id()
    tasks = TaskTracker()  # every background task of the process (tasks.py)
    leases = (
        Leases(
            db,
            clock,
            instance_id=instance_id,
            flush_s=settings.lease_flush_ms / 1000,
            idle_s=settings.lease_idle_s,
            on_key_gone=auth.forget,
            tasks=tasks,
        )
        if settings.credit_leases
        else None
    )
    meter = Meter(
        db,
        clock,
        instance_id=instance_id,
        leases=leases,
        tasks=tasks,
        max_pending=settings.max_pending_settlements,
    )
    upstream = UpstreamClient(
        limit_per_host=settings.upstream_connections,
        redactor=Redactor(p.api_key for p in registry.providers.values()),
        max_body_bytes=settings.upstream_max_body_bytes,
        max_stream_s=settings.upstream_max_stream_s,
    )
    metrics = Metrics()
    tracer = tracer or Tracer()
    health = HealthBook(
        failure_threshold=settings.circuit_failures,
        cooldown_s=settings.circuit_cooldown_s,
        on_circuit=lambda ep, is_open: metrics.circuit_changed(
            ep.model.id, ep.provider.slug, is_open
        ),
    )
    limit_index = RateLimitIndex(db)
    limiter = RateLimiter(
        limit_index,
        clock=clock,
        metrics=metrics,
        redis_url=settings.redis_url,
        redis_timeout_s=settings.redis_timeout_s,
    )
    return AppState(
        settings=settings,
        clock=clock,
        db=db,
        registry=registry,
        auth=auth,
        accounts=AccountService(db, clock),
        keys=keys,
        projects=projects,
        configs=configs,
        instance_id=instance_id,
        meter=meter,
        upstream=upstream,
        health=health,
        tasks=tasks,
        metrics=metrics,
        tracer=tracer,
        gateway=Gateway(
            registry=registry,
            configs=configs,
            meter=ObservedMeter(meter, metrics, tracer),
            upstream=upstream,
            health=health,
            auth=auth,
            tasks=tasks,
            metrics=metrics,
            tracer=tracer,
            limiter=limiter,
        ),
        recovery=Recovery(
            db,
            meter,
            clock,
            heartbeat_s=settings.heartbeat_s,
            stale_s=settings.reservation_stale_s,
            shutdown_settle_s=settings.shutdown_settle_s,
            tasks=tasks,
        ),
        budgets=BudgetService(db, clock),
        usage=UsageService(db, clock),
        request_ids=RequestIds(instance_id),
        request_log_writer=RequestLogWriter(
            db,
            interval_s=request_log_flush_s(settings, db),
            capacity=settings.request_log_buffer,
            retention_s=settings.request_log_retention_days * 86_400,
            clock=clock,
            metrics=metrics,
        ),
        request_log=RequestLogService(db),
        rate_limits=RateLimitService(db, clock, limit_index),
        audit=AuditService(db),
        oidc=_oidc_client(settings),
        sessions=_console_sessions(settings, db, clock),
    )


def _oidc_client(settings: Settings) -> OidcClient | None:
    if not settings.oidc_enabled:
        return None
    assert settings.oidc_issuer is not None and settings.oidc_client_id is not None
    secret = settings.oidc_client_secret
    return OidcClient(
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        client_secret=None if secret is None else secret.get_secret_value(),
        scopes=settings.oidc_scopes,
    )


def _console_sessions(settings: Settings, db: Database, clock: Clock) -> ConsoleSessions | None:
    if not settings.oidc_enabled or settings.oidc_issuer is None:
        return None
    return ConsoleSessions(
        db,
        clock,
        issuer=settings.oidc_issuer,
        user_claim=settings.oidc_user_claim,
        admin_claim=settings.oidc_admin_claim,
        admin_prefix=settings.oidc_admin_prefix,
        create_users=settings.oidc_create_users,
        lifetime_s=settings.console_session_minutes * 60,
    )


def create_app(
    settings: Settings | None = None,
    *,
    registry: Registry | None = None,
    clock: Clock = system_clock,
    tracer: Tracer | None = None,
) -> FastAPI:
    """``tracer``: tests pass their own; by default the settings and ``OTEL_*`` decide."""
    settings = settings or Settings()
    registry = registry or load_registry(settings.providers)
    tracer = tracer or build_tracer(settings.tracing)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for warning in registry.warnings:  # e.g. an optional provider without its secret
            logging.getLogger("tollway.registry").warning(warning)
        state = build_state(settings, registry, clock, tracer)
        app.state.tollway = state
        await state.recovery.start()
        state.request_log_writer.start(state.tasks.spawn)
        # Everything built so far (modules, the app, the registry, the engines) lives as long
        # as the process: out of the collector's sight, a full collection no longer walks it
        # (measured: the slowest of 3,000 sequential requests went from ~85 ms to ~9 ms).
        gc.freeze()
        # Young collections every 10,000 allocations instead of 700: under load the objects
        # of the requests in flight survived the frequent young collections, were promoted and
        # set off full collections (bench/README.md, "What stalls the loop": at c=256 on
        # SQLite 8-9 full collections and ~0.5-0.7 s of collector CPU per 5 s before, none and
        # ~0.09 s after).
        gc.set_threshold(10_000, 10, 10)
        try:
            yield
        finally:
            # Requests have ended: their rows are queued; write them, then drain the rest.
            await state.request_log_writer.close()
            await state.tasks.drain()
            await state.recovery.stop()
            await state.upstream.close()
            if state.oidc is not None:
                await state.oidc.close()
            await state.gateway.limiter.close()
            await state.tasks.close()  # anything left running: cancelled, named in the log
            await state.db.dispose()
            state.metrics.close()
            await asyncio.to_thread(tracer.shutdown)

    app = FastAPI(
        title="Tollway",
        version=__version__,
        description="A self-hosted LLM gateway: OpenAI-compatible inference with policy "
        "routing, and a Management API compatible with cortecs.ai.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry layer asks the global providers on every request (three
        # environment lookups); tracing is Tollway's (observe/tracing.py), on its own provider.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # our own /docs, offline (console/apidocs.py); no /redoc
        redoc_url=None,
    )
    install_error_handlers(app)
    # The one middleware: request id, body limit, span, log line; it serves the inference
    # POSTs itself (http/fastpath.py) and hands the rest to the router.
    app.add_middleware(Edge, max_bytes=settings.max_body_bytes, tracer=tracer)
    install_openapi(app)
    app.include_router(health.router)
    app.include_router(inference.router)
    app.include_router(messages.router)
    app.include_router(responses.router)
    app.include_router(management.router)
    app.include_router(budgets.router)
    app.include_router(rate_limits.router)
    app.include_router(usage.router)
    app.include_router(requests.router)
    app.include_router(audit.router)
    app.include_router(sso.router)
    app.include_router(models.router)
    mount_console(app)
    mount_api_docs(app)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker process builds its own app)."""
    return create_app()


def request_log_flush_s(settings: Settings, db: Database) -> float:
    """The request log's flush interval: as set, else 25 ms on SQLite and 100 ms on
    PostgreSQL. SQLite writes on its own thread, on the same core as the requests: smaller,
    more frequent batches cut the p99 at low load by a third for ~2-5% more CPU there
    (bench/README.md, "the request log's flush interval on SQLite"). On PostgreSQL a flush's
    rows go 48 per statement (`store/request_log.py`) and a commit is a round trip."""
    if settings.request_log_flush_ms is not None:
        return settings.request_log_flush_ms / 1000
    return 0.025 if db.is_sqlite else 0.1
