"""audit: on PostgreSQL, append a transaction's events to the chain in one round trip

``audit_append(key, occurred_at, events)`` takes the transaction-level advisory lock that
serialises audited commits, reads the chain's head on a snapshot taken after the lock is
granted (a VOLATILE function's statements each take a fresh one), and inserts ``events`` (a
JSON array, in order), each hashed here: the caller sends every event's canonical encoding
as the text before and after its ``prev_hash`` value (``services.audit.canonical_parts``),
so ``row_hash`` is ``sha256(before || prev_hash || after)``, the same bytes ``audit.verify``
recomputes. Returns the new ids in order. It replaces ``audit_chain_head`` (0009), which
took the lock and read the head but left the insert to a second statement.

Revision ID: 0010_audit_append
Revises: 0009_audit_chain_head
Create Date: 2026-12-07 12:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0010_audit_append"
down_revision = "0009_audit_chain_head"
branch_labels = None
depends_on = None

AUDIT_APPEND = """
CREATE FUNCTION audit_append(lock_key bigint, occurred timestamptz, events jsonb)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head varchar;
    hashed varchar;
    event jsonb;
    new_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    head := COALESCE((SELECT row_hash FROM audit_events ORDER BY id DESC LIMIT 1), repeat('0', 64));
    FOR event IN SELECT value FROM jsonb_array_elements(events) LOOP
        hashed := encode(sha256(convert_to((event->>'before') || head || (event->>'after'), 'UTF8')), 'hex');
        INSERT INTO audit_events
            (occurred_at, actor, project, action, resource_type, resource_id, summary, prev_hash, row_hash)
        VALUES
            (occurred, event->>'actor', event->>'project', event->>'action', event->>'resource_type',
             event->>'resource_id', event->>'summary', head, hashed)
        RETURNING id INTO new_id;
        head := hashed;
        RETURN NEXT new_id;
    END LOOP;
END;
$$;
"""

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
        op.execute(AUDIT_APPEND)
        op.execute("DROP FUNCTION audit_chain_head(bigint)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CHAIN_HEAD)
        op.execute("DROP FUNCTION audit_append(bigint, timestamptz, jsonb)")
