"""The ``mlplatform`` command: every subcommand explains itself; users, tokens, audit, plugins."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from mlplatform.cli import main


@pytest.fixture
def run(tmp_path, monkeypatch, new_database_url):
    monkeypatch.setenv("MLPLATFORM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLPLATFORM_DATABASE_URL", new_database_url("sqlite"))

    def invoke(*args: str, code: int = 0):
        result = CliRunner().invoke(main, list(args))
        assert result.exit_code == code, result.output
        return result.output

    return invoke


def test_every_command_has_help(run) -> None:
    commands = [
        "serve",
        "worker",
        "db upgrade",
        "plugins",
        "config check",
        "users create",
        "users create-admin",
        "tokens create",
        "tokens revoke",
        "audit verify",
        "experiments list",
        "experiments create",
        "runs search",
        "runs show",
        "artifacts upload",
        "artifacts download",
    ]
    for command in commands:
        output = run(*command.split(), "--help")
        assert "Usage:" in output and len(output.splitlines()) > 3, command


def test_users_tokens_and_audit(run) -> None:
    output = run("users", "create-admin", "root", "--email", "root@example.com")
    token = output.strip().splitlines()[-1].split()[-1]
    assert token.startswith("mlp_")
    run("users", "create", "ann")
    run("users", "create", "ann", code=1)
    output = run("tokens", "create", "ann", "--name", "ci", "--expires-in-days", "30")
    token_id = output.split()[1]
    run("tokens", "revoke", token_id)
    assert "intact: 5 events" in run("audit", "verify")


def test_audit_verify_fails_on_tampering(run, tmp_path) -> None:
    run("users", "create", "ann")
    run("users", "create", "bob")
    import os

    from sqlalchemy import create_engine

    engine = create_engine(os.environ["MLPLATFORM_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'x' WHERE id = 1"))
    engine.dispose()
    assert "BROKEN at event 1" in run("audit", "verify", code=1)


def test_plugins_lists_backends_and_schemas(run) -> None:
    listing = json.loads(run("plugins", "--json"))
    names = {p["name"] for p in listing}
    assert "mlplatform.plugins.local_storage" in names
    text_output = run("plugins")
    assert "artifact_store local: options root" in text_output


def test_a_bad_config_is_one_clear_line(tmp_path, monkeypatch) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("jobs: {backend: celery}\n")
    result = CliRunner().invoke(main, ["--config", str(path), "db", "upgrade"])
    assert result.exit_code == 1
    assert "jobs.backend: Must be one of: inline, rq" in result.output
    assert "Traceback" not in result.output
