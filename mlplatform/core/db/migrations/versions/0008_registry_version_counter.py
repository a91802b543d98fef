"""registry: a per-model version counter, so a deleted version's number is never given again

``registered_models.last_version`` holds the highest number the model ever gave; creating a
version increments it in the same ``UPDATE`` that locks the model row. Filled from the
versions that exist.

Revision ID: 0008_registry_version_counter
Revises: 0007_tracking_ingest_search
Create Date: 2026-12-07 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_registry_version_counter"
down_revision = "0007_tracking_ingest_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registered_models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_version", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE registered_models SET last_version = "
        "(SELECT coalesce(max(version), 0) FROM model_versions WHERE model_versions.model_id = registered_models.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("registered_models", schema=None) as batch_op:
        batch_op.drop_column("last_version")
