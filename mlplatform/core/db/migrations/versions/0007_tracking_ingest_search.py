"""tracking: metric points without a per-row foreign key; search statistics

``metrics.run_id`` loses its foreign key to ``runs``. PostgreSQL checked it with one lookup
and row lock per inserted point, about half of the database's work per 1000-point batch.
The service keeps the guarantee instead: logging locks its run's row (``FOR KEY SHARE``)
before writing, and purging an experiment locks its runs, deletes their points, then the
runs (tracking.py). On SQLite the table is rebuilt without the key.

PostgreSQL: multi-column statistics (``CREATE STATISTICS ... (mcv)``) on ``params`` and
``run_tags`` (key, value), so the planner sees that ``key = 'p0' AND value = 'x'`` matches a
quarter of the runs rather than the product of the two columns' frequencies, and picks the
plan that walks ``ix_latest_metrics_key_value`` in order and stops at the page's end.

Revision ID: 0007_tracking_ingest_search
Revises: 0006_monitoring_series
Create Date: 2026-11-23 15:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0007_tracking_ingest_search"
down_revision = "0006_monitoring_series"
branch_labels = None
depends_on = None

STATISTICS = {"st_params_key_value": "params", "st_run_tags_key_value": "run_tags"}


def upgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_constraint("fk_metrics_run_id_runs", type_="foreignkey")
    if op.get_bind().dialect.name == "postgresql":
        for name, table in STATISTICS.items():
            op.execute(f'CREATE STATISTICS IF NOT EXISTS {name} (mcv) ON "key", value FROM {table}')
            op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in STATISTICS:
            op.execute(f"DROP STATISTICS IF EXISTS {name}")
    # Points whose run is gone would fail the key: drop them first.
    op.execute("DELETE FROM metrics WHERE NOT EXISTS (SELECT 1 FROM runs WHERE runs.id = metrics.run_id)")
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.create_foreign_key("fk_metrics_run_id_runs", "runs", ["run_id"], ["id"], ondelete="CASCADE")
