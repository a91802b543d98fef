"""Shared fixtures: databases (SQLite and a throwaway PostgreSQL database), platforms, apps.

Real services only. PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379)
must be running; under ``CI=true`` a missing service fails the run instead of skipping.
Fixtures for servers the tests start themselves (OpenBao, moto, Azurite) live in the
``conftest.py`` of the test folder that needs them; Ray, which starts once per process, in
``tests/ray_fixtures.py`` for every folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from mlplatform.core.db import migrate
from mlplatform.core.platform import Platform

pytest_plugins = ["tests.api_client", "tests.ray_fixtures"]

POSTGRES_ADMIN_URL = os.environ.get("MLPLATFORM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"


def service_missing(message: str) -> None:
    """Fail under CI, skip on a developer's machine."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated PostgreSQL database that per-test databases are copied from."""
    try:
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        service_missing(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    name = f"mlp_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    migrate.upgrade(url)
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def new_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """Make a fresh migrated database of the given kind ("sqlite" or "postgresql"); dropped after the test."""
    created: list[str] = []

    def make(kind: str) -> str:
        if kind == "sqlite":
            path = tmp_path / f"db-{uuid.uuid4().hex[:6]}.db"
            shutil.copy(request.getfixturevalue("sqlite_template"), path)
            return f"sqlite:///{path}"
        template = request.getfixturevalue("postgres_template")
        name = f"mlp_test_{uuid.uuid4().hex[:10]}"
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        admin.dispose()
        created.append(name)
        return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    yield make
    if created:
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_kind(request: pytest.FixtureRequest) -> str:
    """Storage and API tests run once per database."""
    return request.param


@pytest.fixture
def db_url(db_kind: str, new_database_url: Callable[[str], str]) -> str:
    return new_database_url(db_kind)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


@pytest.fixture
def make_platform(tmp_path: Path, new_database_url: Callable[[str], str]) -> Iterator[Callable[..., Platform]]:
    """Build a Platform on a fresh database: ``make_platform(config_overrides, db="sqlite", extra_plugins=[...])``."""
    built: list[Platform] = []

    def make(overrides: dict[str, Any] | None = None, *, db: str = "sqlite", **kwargs: Any) -> Platform:
        base = {"data_dir": str(tmp_path / f"data-{len(built)}"), "database": {"url": new_database_url(db)}}
        platform = Platform(deep_merge(base, overrides or {}), **kwargs)
        built.append(platform)
        return platform

    yield make
    for platform in built:
        platform.close()


@pytest.fixture
def platform(make_platform: Callable[..., Platform], db_kind: str) -> Platform:
    """A platform on the embedded defaults, once per database."""
    return make_platform(db=db_kind)
