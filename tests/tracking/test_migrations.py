"""The tracking migration matches the models: ``alembic check`` finds nothing to generate."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, inspect

from mlplatform.core.db import migrate


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_alembic_check_passes(kind: str, new_database_url: Callable[[str], str]) -> None:
    url = new_database_url(kind)
    migrate.check(url)
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        indexes = {i["name"] for i in inspect(engine).get_indexes("metrics")} | {
            i["name"] for i in inspect(engine).get_indexes("latest_metrics")
        }
    finally:
        engine.dispose()
    assert {
        "experiments",
        "experiment_tags",
        "runs",
        "params",
        "metrics",
        "latest_metrics",
        "run_tags",
        "run_idempotency_keys",
    } <= tables
    assert {"ix_metrics_run_id_key_step", "ix_latest_metrics_key_value"} <= indexes
