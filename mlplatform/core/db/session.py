"""Engine and session factory. A request or a job owns the transaction, never a service.

``Database.write()`` opens a transaction that may write; on SQLite it begins IMMEDIATE so
that writers queue for the lock up front instead of failing to upgrade a stale snapshot.
``Database.read()`` is for GETs and never writes; on PostgreSQL it runs outside a transaction
(see ``Database``); ``Database.snapshot()`` is one consistent view for reads that need one.
Callbacks registered with ``after_commit(session, fn)`` run only once the transaction has
committed (jobs are enqueued and events published there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("mlplatform.db")


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for PostgreSQL and make SQLite paths absolute."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        parsed = parsed.set(database=str(path))
    return parsed.render_as_string(hide_password=False)


def build_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> Engine:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("mlp_write") else "BEGIN")

        return engine
    engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size)

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # pool_pre_ping's SELECT 1 on every checkout is a round trip on each hot path; a
        # connection that was in use less than IDLE_BEFORE_PING seconds ago is taken as alive
        # (a dropped one is still detected on use and the pool invalidated).
        now = time.monotonic()
        if now - record.info.get("returned_at", 0.0) > IDLE_BEFORE_PING:
            try:
                engine.dialect.do_ping(dbapi_connection)  # what pool_pre_ping runs
            except Exception as exc:  # noqa: BLE001 - the pool reconnects and retries the checkout
                raise DisconnectionError(f"stale pooled connection: {exc}") from exc

    @event.listens_for(engine, "checkin")
    def _mark_returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    return engine


#: A pooled PostgreSQL connection idle longer than this is pinged before it is handed out.
IDLE_BEFORE_PING = 2.0


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once ``session``'s transaction has committed; drop it on rollback."""
    session.info.setdefault("after_commit", []).append(callback)


#: ``Session.info`` key marking the sessions of ``Database.read()`` and ``snapshot()``.
READ_ONLY = "read_only"


class ReadOnlySession(RuntimeError):
    """A read session was asked to write: a bug in the caller, which should use ``Database.write()``."""


def _refuse_writes_in_reads(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
    """Core INSERT/UPDATE/DELETE on a read session's connection is a bug: outside a transaction it would commit."""
    if context is not None and (context.isinsert or context.isupdate or context.isdelete):
        raise ReadOnlySession(f"a read session cannot write ({statement.split(None, 1)[0]}); use Database.write()")


@event.listens_for(Session, "before_flush")
def _refuse_flush_in_reads(session: Session, _context: Any, _instances: Any) -> None:
    # a read session outside a transaction would commit what it flushed, so it flushes nothing
    if session.info.get(READ_ONLY) and (session.new or session.dirty or session.deleted):
        raise ReadOnlySession("a read session cannot save changes; use Database.write()")


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop("after_commit", []):
        try:
            callback()
        except Exception:
            log.exception("after-commit callback %r failed", callback)


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)


class Database:
    def __init__(
        self, url: str, *, echo: bool = False, pool_size: int = 10, publish: Callable[[Any], None] | None = None
    ) -> None:
        """``publish`` receives each audited change after commit (see ``services.audit``)."""
        self.url = url
        self.engine = build_engine(url, echo=echo, pool_size=pool_size)
        self.dialect = self.engine.dialect.name
        info = {"publish": publish} if publish else {}
        postgresql = self.dialect == "postgresql"
        # Reads on PostgreSQL run outside a transaction: under READ COMMITTED every statement
        # takes its own snapshot anyway, so BEGIN and ROLLBACK were two round trips that bought
        # nothing, and psycopg follows a ROLLBACK with DEALLOCATE ALL once it has prepared
        # statements (a third). SQLite has no round trips to save and keeps its transaction.
        reads = self.engine.execution_options(**({"isolation_level": "AUTOCOMMIT"} if postgresql else {}))
        self._reader = sessionmaker(reads, expire_on_commit=False, autoflush=False, info={READ_ONLY: True})
        snapshots = self.engine.execution_options(
            **({"isolation_level": "REPEATABLE READ", "postgresql_readonly": True} if postgresql else {})
        )
        for engine in (reads, snapshots):  # these engines' own listeners: writers pay nothing
            event.listen(engine, "before_cursor_execute", _refuse_writes_in_reads)
        self._snapshot = sessionmaker(snapshots, expire_on_commit=False, autoflush=False, info={READ_ONLY: True})
        self._writer = sessionmaker(self.engine.execution_options(mlp_write=True), expire_on_commit=False, info=info)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any exception."""
        with self._writer.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; it refuses to write (``ReadOnlySession``). Each statement sees
        what was committed when it started: use ``snapshot()`` when several must agree."""
        with self._reader() as session:
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only transaction whose statements all see the database as of its first one
        (PostgreSQL: REPEATABLE READ READ ONLY; SQLite: its read transaction); needed for
        server-side cursors (``yield_per``) on PostgreSQL too."""
        with self._snapshot() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
