"""usage_events.status and usage_source wide enough for every value the meter writes

`client_disconnected` (19 characters) did not fit VARCHAR(16): on PostgreSQL the settlement
of every stream whose client left failed, and its reservation stayed held. SQLite ignores
declared lengths, which is why only PostgreSQL broke; the table is rebuilt there anyway so
its declared schema matches the metadata.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = ("status", "usage_source")


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as batch_op:
        for column in _COLUMNS:
            batch_op.alter_column(
                column,
                existing_type=sa.String(length=16),
                type_=sa.String(length=32),
                existing_nullable=False,
            )


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch_op:
        for column in _COLUMNS:
            batch_op.alter_column(
                column,
                existing_type=sa.String(length=32),
                type_=sa.String(length=16),
                existing_nullable=False,
            )
