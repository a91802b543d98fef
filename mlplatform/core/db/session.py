"""Engine and session factory. A request or a job owns the transaction, never a service.

``Database.write()`` opens a transaction that may write; on SQLite it begins IMMEDIATE so
that writers queue for the lock up front instead of failing to upgrade a stale snapshot.
``Database.read()`` is for GETs. Callbacks registered with ``after_commit(session, fn)`` run
only once the transaction has committed (jobs are enqueued and events published there).
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
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        # One-statement reads on every request (token, role): on PostgreSQL skip BEGIN and
        # ROLLBACK, two round trips of three. SQLite has no round trips to save.
        quick = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT") if self.dialect == "postgresql" else self.engine
        )
        self._quick_reader = sessionmaker(quick, expire_on_commit=False)
        self._writer = sessionmaker(self.engine.execution_options(mlp_write=True), expire_on_commit=False, info=info)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any exception."""
        with self._writer.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    @contextmanager
    def quick_read(self) -> Iterator[Session]:
        """A session for one or two independent reads, outside any transaction where that is cheaper."""
        with self._quick_reader() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
