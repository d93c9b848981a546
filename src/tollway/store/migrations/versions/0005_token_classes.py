"""token classes: cached, cache-written and reasoning tokens in usage events and the request log

Parts of the prompt and completion tokens already stored (docs/billing.md); rows written
before this revision have none (0).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLES = ("usage_events", "request_log")
_COLUMNS = ("cached_prompt_tokens", "cache_write_tokens", "reasoning_tokens")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch_op:
            for column in _COLUMNS:
                batch_op.add_column(
                    sa.Column(column, sa.Integer(), nullable=False, server_default="0")
                )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch_op:
            for column in _COLUMNS:
                batch_op.drop_column(column)
