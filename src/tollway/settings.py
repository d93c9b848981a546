"""Settings from the environment (``TOLLWAY_*``), built once at start and passed in."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tollway.jsonbody import JsonLimits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOLLWAY_", extra="ignore")

    database_url: str = "sqlite:///./tollway.db"
    providers: str | None = Field(
        default=None, description="Path of the provider registry YAML; unset = built-in demo."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=256)
    key_limit: int = Field(default=100, ge=1, description="API keys per user.")
    cache_ttl_s: float = Field(
        default=1.0, ge=0, description="How long a replica trusts a cached project configuration."
    )
    auth_cache_size: int = Field(default=10_000, ge=0)
    heartbeat_s: float = Field(default=5.0, gt=0, description="Instance heartbeat interval.")
    reservation_stale_s: float = Field(
        default=20.0, gt=0, description="An instance silent this long is presumed dead."
    )
    reservation_max_age_s: float = Field(
        default=900.0,
        gt=0,
        description="No request holds credits longer; `ledger verify` reports older holds.",
    )
    shutdown_settle_s: float = Field(
        default=5.0,
        ge=0,
        description="On shutdown, how long to keep retrying settlements the database refused.",
    )
    max_pending_settlements: int = Field(
        default=10_000,
        ge=1,
        description="Settlements waiting in memory for the database, at most; while full, new "
        "requests are refused (503 database_unavailable) and none is dropped.",
    )
    credit_leases: bool = Field(
        default=True,
        description="Reserve requests in memory against per-process credit leases, "
        "group-committing their charges; 0 = one database reservation per request.",
    )
    lease_flush_ms: int = Field(
        default=25,
        ge=1,
        le=1000,
        description="How often charges reserved against a credit lease are committed "
        "(after a crash, at most this much of them is lost, in the user's favour).",
    )
    lease_idle_s: float = Field(
        default=2.0, gt=0, description="An unused credit lease goes back to the balance."
    )
    db_pool_size: int = Field(default=16, ge=1)
    sqlite_busy_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a SQLite write waits for another process's lock before the "
        "database counts as unavailable (503).",
    )
    pg_statement_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="PostgreSQL: the longest a statement may run (statement_timeout) before "
        "it is cancelled and the request answered 503 database_unavailable.",
    )
    pg_lock_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="PostgreSQL: the longest a statement waits for a row or table lock "
        "(lock_timeout), e.g. a reservation behind a stuck transaction; then 503.",
    )
    upstream_max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest whole (non-streamed) answer or error body read from an upstream; "
        "a larger one is refused (502 naming the cap).",
    )
    upstream_max_stream_s: float = Field(
        default=1800.0,
        gt=0,
        description="Longest an upstream stream may run in total (the idle timeout bounds "
        "the gaps); then it ends with an error event, and what streamed is billed.",
    )
    upstream_connections: int = Field(
        default=4096, ge=1, description="Requests in flight per provider (a stream holds one)."
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (413 beyond it); chat bodies carry "
        "base64 images, so the default is Anthropic's 32 MiB.",
    )
    max_management_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest Management API request body (a name, a budget, a configuration).",
    )
    http_max_head_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request head (request line and headers); 431 beyond it.",
    )
    http_head_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Time a client has to send a whole request head; 408 and closed after.",
    )
    http_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest silence inside a request body before the connection is closed.",
    )
    http_keepalive_s: float = Field(
        default=5.0, gt=0, description="How long an idle kept-alive connection stays open."
    )
    http_max_connections: int = Field(
        default=2048,
        ge=1,
        description="Open connections per process; a request on one more is a 503.",
    )
    max_json_depth: int = Field(
        default=64,
        ge=2,
        le=200,
        description="Deepest nesting of a JSON request body (400 beyond it, before parsing).",
    )
    max_json_values: int = Field(
        default=200_000,
        ge=1000,
        description="Most JSON values (object keys included) in a request body (413 beyond "
        "it, before parsing): bounds the memory and time a body's parse may take.",
    )
    circuit_failures: int = Field(
        default=3,
        ge=1,
        description="Consecutive upstream failures that open an endpoint's circuit.",
    )
    circuit_cooldown_s: float = Field(
        default=30.0, gt=0, description="How long an open circuit waits before its trial."
    )
    metrics_token: str | None = Field(
        default=None,
        description="Bearer token that GET /metrics requires; unset = no /metrics endpoint.",
    )
    tracing: bool | None = Field(
        default=None,
        description="OpenTelemetry tracing: 1 on, 0 off; unset = on when OTEL_* variables "
        "configure a trace exporter.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for rate limits shared by every replica; unset = counted per process.",
    )
    redis_timeout_s: float = Field(
        default=1.0,
        gt=0,
        description="How long a rate-limit check waits for Redis before counting in process.",
    )
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as logfmt-style text or one JSON object each."
    )
    request_log_flush_ms: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="How often queued request log rows are written; unset: 25 ms on SQLite,"
        " 100 ms on PostgreSQL.",
    )
    request_log_buffer: int = Field(
        default=20_000, ge=1, description="Request log rows held while the database is away."
    )
    request_log_retention_days: float = Field(
        default=30, ge=0, description="Request log rows older than this are deleted; 0 = kept."
    )
    # Console single sign-on (docs/console.md). Off unless issuer and client id are set.
    oidc_issuer: str | None = Field(
        default=None,
        description="OIDC issuer URL (discovery at /.well-known/openid-configuration).",
    )
    oidc_client_id: str | None = Field(default=None, description="The console's OIDC client id.")
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="The client's secret (TOLLWAY_OIDC_CLIENT_SECRET); never logged."
    )
    oidc_scopes: str = Field(default="openid profile email", description="Scopes asked for.")
    oidc_user_claim: str = Field(
        default="preferred_username", description="The ID token claim that names the user."
    )
    oidc_admin_claim: str | None = Field(
        default=None, description="A claim (e.g. groups, roles) that can grant project admin."
    )
    oidc_admin_prefix: str = Field(
        default="tollway-admin:",
        description="A value '<prefix><project>' in the admin claim makes the user its admin.",
    )
    oidc_create_users: bool = Field(
        default=False, description="Create an unknown user on first sign-in (else refused)."
    )
    oidc_redirect_url: str | None = Field(
        default=None,
        description="The callback URL registered at the issuer; unset = this request's origin "
        "+ /auth/oidc/callback.",
    )
    console_session_minutes: int = Field(
        default=60, ge=1, le=24 * 60, description="Lifetime of a console sign-in session."
    )

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @cached_property
    def json_limits(self) -> JsonLimits:
        return JsonLimits(max_depth=self.max_json_depth, max_values=self.max_json_values)

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "sqlite+aiosqlite://", "postgresql", "postgres://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError("must be one of critical, error, warning, info, debug")
        return level
