"""AppState: everything a request may need, built once per process by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.accounts.service import AccountService
from tollway.audit.service import AuditService
from tollway.billing.budgets import BudgetService
from tollway.billing.meter import Meter
from tollway.billing.recovery import Recovery
from tollway.billing.usage import UsageService
from tollway.clock import Clock
from tollway.gateway.auth import Authenticator
from tollway.gateway.config_cache import ConfigCache
from tollway.gateway.health import HealthBook
from tollway.gateway.pipeline import Gateway
from tollway.ids import RequestIds
from tollway.keys.service import KeyService
from tollway.limits.service import RateLimitService
from tollway.observe.metrics import Metrics
from tollway.observe.requests import RequestLogService
from tollway.observe.tracing import Tracer
from tollway.observe.writer import RequestLogWriter
from tollway.projects.service import ProjectService
from tollway.providers.registry import Registry
from tollway.providers.upstream import UpstreamClient
from tollway.settings import Settings
from tollway.sso.oidc import OidcClient
from tollway.sso.sessions import ConsoleSessions
from tollway.store.database import Database
from tollway.tasks import TaskTracker


@dataclass(slots=True)
class AppState:
    settings: Settings
    clock: Clock
    db: Database
    registry: Registry
    auth: Authenticator
    accounts: AccountService
    keys: KeyService
    projects: ProjectService
    configs: ConfigCache
    instance_id: str
    meter: Meter
    upstream: UpstreamClient
    health: HealthBook
    tasks: TaskTracker
    metrics: Metrics
    tracer: Tracer
    gateway: Gateway
    recovery: Recovery
    budgets: BudgetService
    usage: UsageService
    request_ids: RequestIds
    request_log_writer: RequestLogWriter
    request_log: RequestLogService
    rate_limits: RateLimitService
    audit: AuditService
    oidc: OidcClient | None  # console single sign-on, when configured
    sessions: ConsoleSessions | None
