"""Pooled PostgreSQL connections: pinged only after being idle, and a dead one is replaced."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text

from mlplatform.core.db import session as db_session
from mlplatform.core.db.session import Database
from tests.conftest import POSTGRES_ADMIN_URL


def _backend_pid(db: Database) -> int:
    with db.read() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_killed_while_idle_is_replaced_at_checkout(
    new_database_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(new_database_url("postgresql"), pool_size=1)
    try:
        first = _backend_pid(db)
        assert _backend_pid(db) == first  # one pooled connection, reused
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
        admin.dispose()
        monkeypatch.setattr(db_session, "IDLE_BEFORE_PING", 0.0)  # it counts as idle: pinged
        second = _backend_pid(db)
        assert second != first
    finally:
        db.dispose()


def test_a_connection_back_in_the_pool_moments_ago_is_not_pinged(
    new_database_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(new_database_url("postgresql"), pool_size=1)
    pings: list[object] = []
    try:
        _backend_pid(db)
        original = db.engine.dialect.do_ping
        monkeypatch.setattr(db.engine.dialect, "do_ping", lambda c: pings.append(c) or original(c))
        monkeypatch.setattr(db_session, "IDLE_BEFORE_PING", 3600.0)
        _backend_pid(db)
        assert pings == []
        monkeypatch.setattr(db_session, "IDLE_BEFORE_PING", 0.0)
        _backend_pid(db)
        assert len(pings) == 1
    finally:
        db.dispose()
