"""audit: on PostgreSQL, take the chain's lock and read its head in one round trip

``audit_chain_head(key)`` takes the transaction-level advisory lock that serialises audited
commits, then reads the newest event's hash. It must be a VOLATILE function: its SELECT then
runs on a snapshot taken after the lock is granted, so it sees the event the previous lock
holder committed (one statement holding both would read the head as of before the wait).
SQLite serialises writers itself and has nothing to add.

Revision ID: 0009_audit_chain_head
Revises: 0008_registry_version_counter
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0009_audit_chain_head"
down_revision = "0008_registry_version_counter"
branch_labels = None
depends_on = None

CHAIN_HEAD = """
CREATE FUNCTION audit_chain_head(lock_key bigint) RETURNS varchar LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN (SELECT row_hash FROM audit_events ORDER BY id DESC LIMIT 1);
END;
$$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CHAIN_HEAD)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_chain_head(bigint)")
