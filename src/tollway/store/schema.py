"""The database schema (SQLAlchemy Core). Changes go through Alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    # Spendable balance in credits; always equal to the sum of the user's ledger rows.
    Column("balance_credits", BigInteger, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
)

projects = Table(
    "projects",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "project_id", String(32), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("role", String(16), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", String(32), ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("is_management", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("user_id", "name", name="uq_api_keys_user_name"),
)

project_configs = Table(
    "project_configs",
    metadata,
    Column("id", String(24), primary_key=True),
    Column(
        "project_id",
        String(32),
        ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("active", Boolean, nullable=False),
    Column("allow_overwrite", Boolean, nullable=False),
    Column("inference_config", Text, nullable=False),
    Column("schema_version", String(8), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

# Every `ledger.kind` written (top-ups by accounts, the rest by the meter).
# `shortfall`: usage the balance could not cover, recorded at 0 credits (its note says how
# much); see docs/billing.md.
LEDGER_KINDS = ("topup", "reserve", "release", "charge", "lease", "shortfall")

ledger = Table(
    "ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Unique per movement (e.g. "charge:<request id>"): a request is charged at most once.
    Column("entry_id", String(80), nullable=False, unique=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount_credits", BigInteger, nullable=False),
    Column("request_id", String(64), nullable=True),
    Column("note", String(200), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_ledger_user_id", "user_id"),
)

instances = Table(
    "instances",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
)

reservations = Table(
    "reservations",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", String(32), nullable=False),
    Column("key_id", Integer, nullable=True),
    Column("amount_credits", BigInteger, nullable=False),
    # JSON list of [budget_id, subject, window_start] the reservation holds credits in.
    Column("budget_windows", Text, nullable=False, default="[]"),
    Column("instance_id", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_reservations_instance_id", "instance_id"),
)

usage_events = Table(
    "usage_events",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("user_id", String(32), nullable=False),
    Column("project_id", String(32), nullable=False),
    Column("key_id", Integer, nullable=True),
    Column("key_name", String(64), nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("model", String(128), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("total_tokens", Integer, nullable=False),
    # Token classes (docs/billing.md): parts of the prompt and completion tokens.
    Column("cached_prompt_tokens", Integer, nullable=False, server_default="0"),
    Column("cache_write_tokens", Integer, nullable=False, server_default="0"),
    Column("reasoning_tokens", Integer, nullable=False, server_default="0"),
    Column("cost_credits", BigInteger, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    # Sized for every value the meter writes (`billing.meter.USAGE_STATUSES`/`USAGE_SOURCES`,
    # tested on both backends): SQLite ignores lengths, PostgreSQL refuses a longer value.
    Column("status", String(32), nullable=False),
    Column("usage_source", String(32), nullable=False),
    Index("ix_usage_events_project_created", "project_id", "created_at"),
    Index("ix_usage_events_user_created", "user_id", "created_at"),
)

budgets = Table(
    "budgets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", String(32), ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    # project | each_user | user | each_key | key
    Column("scope", String(16), nullable=False),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("key_id", Integer, ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=True),
    Column("period", String(8), nullable=False),
    Column("limit_credits", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_budgets_project_id", "project_id"),
)

budget_windows = Table(
    "budget_windows",
    metadata,
    Column("budget_id", String(32), ForeignKey("budgets.id", ondelete="CASCADE"), primary_key=True),
    # "" for a project budget, else the user id or key id the window counts for.
    Column("subject", String(64), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("spent_credits", BigInteger, nullable=False, default=0),
    Column("reserved_credits", BigInteger, nullable=False, default=0),
)

# One row per inference request that got past authentication (docs/operations.md): what
# was asked and served, never a prompt or a completion. Written in batches off the request
# path; not money (the ledger is), so a crash may lose the last flush interval of rows.
request_log = Table(
    "request_log",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("client_request_id", String(128), nullable=True),
    Column("user_id", String(32), nullable=False),
    Column("project_id", String(32), nullable=False),
    Column("key_id", Integer, nullable=True),
    Column("key_name", String(64), nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("model", String(128), nullable=False),
    Column("served_model", String(128), nullable=True),
    Column("provider", String(64), nullable=True),
    Column("status", String(24), nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    # Token classes (docs/billing.md): parts of the prompt and completion tokens.
    Column("cached_prompt_tokens", Integer, nullable=False, server_default="0"),
    Column("cache_write_tokens", Integer, nullable=False, server_default="0"),
    Column("reasoning_tokens", Integer, nullable=False, server_default="0"),
    Column("cost_credits", BigInteger, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("ttft_ms", Integer, nullable=True),
    Column("usage_source", String(16), nullable=True),
    Column("error", Text, nullable=True),
    # JSON: the attempts list, and the routing object of the detail view.
    Column("attempts", Text, nullable=False),
    Column("routing", Text, nullable=True),
    Index("ix_request_log_project_created", "project_id", "created_at_ms", "request_id"),
    Index("ix_request_log_user_created", "user_id", "created_at_ms", "request_id"),
    Index("ix_request_log_created", "created_at_ms"),
)

rate_limits = Table(
    "rate_limits",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", String(32), ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    # project | each_user | user | each_key | key (as budgets)
    Column("scope", String(16), nullable=False),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("key_id", Integer, ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=True),
    Column("requests_per_minute", BigInteger, nullable=True),
    Column("tokens_per_minute", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_rate_limits_project_id", "project_id"),
)

# The audit trail (docs/audit.md): one row per change made through the Management API, the
# console or the CLI, written in the same transaction as the change. Append-only: triggers
# refuse UPDATE and DELETE on both backends (migration 0005). No foreign keys: a row outlives
# whatever it names. Never a secret or a key's digest in `before`/`after` (JSON text).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("actor_kind", String(16), nullable=False),  # key | session | cli
    Column("actor_name", String(128), nullable=False),
    Column("actor_user_id", String(32), nullable=True),
    Column("action", String(64), nullable=False),
    Column("target", String(256), nullable=False),
    Column("project_id", String(32), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Index("ix_audit_log_project_created", "project_id", "created_at_ms", "id"),
    Index("ix_audit_log_actor_created", "actor_user_id", "created_at_ms", "id"),
)

# Console sessions signed in through OIDC (docs/console.md): the cookie's token is stored as
# its SHA-256 digest only; a row past expires_at_ms is refused (and pruned at sign-in).
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Index("ix_console_sessions_expires", "expires_at_ms"),
)
