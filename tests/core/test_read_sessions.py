"""``Database.read()`` never writes and, on PostgreSQL, runs outside a transaction;
``Database.snapshot()`` is one consistent view. Both databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import func, insert, select, text, update

from mlplatform.core.db.models import Project
from mlplatform.core.db.session import Database, ReadOnlySession


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, new_database_url: Callable[[str], str]) -> Iterator[Database]:
    database = Database(new_database_url(request.param))
    yield database
    database.dispose()


def _projects(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(Project.name).order_by(Project.name)))


def _add_project(db: Database, name: str) -> None:
    with db.write() as session:
        session.add(Project(name=name, description="", created_by="test"))


def test_a_read_session_refuses_to_save_an_orm_change_and_nothing_is_written(db: Database) -> None:
    _add_project(db, "kept")
    with db.read() as session:
        project = session.scalars(select(Project)).one()
        project.description = "changed in a read"
        session.add(Project(name="added-in-a-read", description="", created_by="test"))
        with pytest.raises(ReadOnlySession, match="use Database.write"):
            session.flush()
    with db.read() as session:
        assert session.scalars(select(Project.description)).all() == [""]
    assert _projects(db) == ["kept"]


@pytest.mark.parametrize("statement", ["insert", "update"])
def test_a_read_session_refuses_core_writes_and_nothing_is_written(db: Database, statement: str) -> None:
    _add_project(db, "kept")
    write = (
        insert(Project).values(name="sneaked", description="", created_by="test")
        if statement == "insert"
        else update(Project).values(description="sneaked")
    )
    with db.read() as session, pytest.raises(ReadOnlySession, match="cannot write"):
        session.execute(write)
    with db.read() as session:
        assert session.execute(select(Project.name, Project.description)).all() == [("kept", "")]


def test_a_read_session_queries_autoflush_nothing(db: Database) -> None:
    """A loaded object changed for display must not be flushed by the next query."""
    _add_project(db, "kept")
    with db.read() as session:
        project = session.scalars(select(Project)).one()
        project.description = "for display only"
        assert session.scalar(select(func.count()).select_from(Project)) == 1
    with db.read() as session:
        assert session.scalar(select(Project.description)) == ""


def test_on_postgresql_a_read_session_holds_no_transaction(new_database_url: Callable[[str], str]) -> None:
    """Each read statement commits on its own: no BEGIN/ROLLBACK round trips (and so no
    DEALLOCATE ALL, which psycopg sends after a ROLLBACK once it has prepared statements).
    SQLite reads keep their transaction: it costs no round trip there."""
    db = Database(new_database_url("postgresql"))
    try:
        with db.read() as session:
            session.execute(text("SELECT 1"))
            driver = session.connection().connection.driver_connection
            assert driver.info.transaction_status == TransactionStatus.IDLE
        with db.write() as session:
            session.execute(text("SELECT 1"))
            driver = session.connection().connection.driver_connection
            assert driver.info.transaction_status == TransactionStatus.INTRANS
    finally:
        db.dispose()


def test_a_snapshot_sees_one_moment_while_a_read_sees_each_commit(db: Database) -> None:
    _add_project(db, "first")
    with db.snapshot() as snapshot:
        assert snapshot.scalar(select(func.count()).select_from(Project)) == 1
        _add_project(db, "second")  # committed by another session meanwhile
        assert snapshot.scalar(select(func.count()).select_from(Project)) == 1
        with db.read() as read:
            assert read.scalar(select(func.count()).select_from(Project)) == 2
        with pytest.raises(ReadOnlySession):
            snapshot.execute(update(Project).values(description="no"))
    assert _projects(db) == ["first", "second"]


def test_a_snapshot_streams_rows_through_a_server_side_cursor(db: Database) -> None:
    for name in ("a", "b", "c"):
        _add_project(db, name)
    with db.snapshot() as session:
        rows = session.execute(select(Project.name).order_by(Project.name).execution_options(yield_per=2))
        assert [name for (name,) in rows] == ["a", "b", "c"]
