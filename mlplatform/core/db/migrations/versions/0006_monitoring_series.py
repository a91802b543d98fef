"""monitoring: window starts of monitor points as epoch seconds, version in the series index,
compaction leases

``monitor_points.window_start`` becomes whole seconds since the Unix epoch (BIGINT), so a
series query buckets with integer arithmetic instead of parsing a date per row; the covering
series index gains ``version_id`` (the per-version series filter). Existing points are
converted in place.

Revision ID: 0006_monitoring_series
Revises: 0005_promotions
Create Date: 2026-11-23 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mlplatform.core.db.base

revision = "0006_monitoring_series"
down_revision = "0005_promotions"
branch_labels = None
depends_on = None

SERIES_COLUMNS = ["deployment_id", "metric", "feature", "window_start", "value"]

# The stored datetime -> epoch seconds, and back (SQLite keeps UTCDateTime as naive UTC text).
TO_EPOCH = {
    "postgresql": "CAST(FLOOR(EXTRACT(EPOCH FROM window_start)) AS BIGINT)",
    "sqlite": "CAST(strftime('%s', window_start) AS INTEGER)",
}
FROM_EPOCH = {
    "postgresql": "to_timestamp(window_start)",
    "sqlite": "strftime('%Y-%m-%d %H:%M:%S.000000', window_start, 'unixepoch')",
}


def _replace_window_start(new_type: sa.types.TypeEngine, expression: dict[str, str], series: list[str]) -> None:
    """Add ``window_start_new`` of ``new_type``, fill it from ``window_start``, then swap the
    columns and rebuild both indexes on the new one."""
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("monitor_points", schema=None) as batch_op:
        batch_op.add_column(sa.Column("window_start_new", new_type, nullable=True))
    op.execute(f"UPDATE monitor_points SET window_start_new = {expression[dialect]}")
    with op.batch_alter_table("monitor_points", schema=None) as batch_op:
        batch_op.drop_index("ix_monitor_points_window")
        batch_op.drop_index("ix_monitor_points_series")
        batch_op.drop_column("window_start")
        batch_op.alter_column(
            "window_start_new", new_column_name="window_start", existing_type=new_type, nullable=False
        )
    op.create_index("ix_monitor_points_series", "monitor_points", series, unique=False)
    op.create_index("ix_monitor_points_window", "monitor_points", ["deployment_id", "window_start"], unique=False)


def upgrade() -> None:
    op.create_table(
        "monitor_compactions",
        sa.Column("deployment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hour_start", mlplatform.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("leased_until", mlplatform.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("compacted_at", mlplatform.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("file", sa.String(length=200), nullable=False),
        sa.Column("files_merged", sa.Integer(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_monitor_compactions_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("deployment_id", "hour_start", name=op.f("pk_monitor_compactions")),
    )
    _replace_window_start(sa.BigInteger(), TO_EPOCH, [*SERIES_COLUMNS, "version_id"])


def downgrade() -> None:
    _replace_window_start(sa.DateTime(timezone=True), FROM_EPOCH, SERIES_COLUMNS)
    op.drop_table("monitor_compactions")
