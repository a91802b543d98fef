"""Aliases: set, move (audited from -> to), reserved names, resolution wherever a version is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlplatform.core.errors import InvalidInput, NotFound
from mlplatform.core.services import access
from mlplatform.core.services.registry import parse_model_ref, resolve_ref, resolve_version
from tests.api_client import Api
from tests.registry.conftest import M, create_model, registered_ready
from tests.registry.helpers import audit_events, deploy


@pytest.fixture
def three(reg: Api, sklearn_model_dir: Path) -> Api:
    """Model ``churn`` with ready versions 1, 2 and 3."""
    create_model(reg, "churn")
    for _ in range(3):
        assert registered_ready(reg, sklearn_model_dir)["status"] == "ready"
    return reg


def test_set_move_and_delete_are_audited(three: Api) -> None:
    first = three.put(f"{M}/churn/aliases/champion", json={"version": 1}, token="dev")
    assert first.status_code == 200, first.json
    assert first.json["version"] == 1 and first.json["previous_version"] is None and first.json["updated_by"] == "dev"
    moved = three.put(f"{M}/churn/aliases/champion", json={"version": "v2"}, token="dev")
    assert moved.json["version"] == 2 and moved.json["previous_version"] == 1
    assert three.put(f"{M}/churn/aliases/champion", json={"version": 2}).status_code == 200  # no-op, not audited
    assert three.put(f"{M}/churn/aliases/challenger", json={"version": "latest"}).json["version"] == 3

    assert three.get(f"{M}/churn").json["aliases"] == {"challenger": 3, "champion": 2}
    assert three.get(f"{M}/churn/versions/champion").json["version"] == 2
    assert three.get(f"{M}/churn/versions/2").json["aliases"] == ["champion"]

    assert three.delete(f"{M}/churn/aliases/champion", token="dev").status_code == 204
    assert three.delete(f"{M}/churn/aliases/champion").status_code == 204  # idempotent
    assert three.get(f"{M}/churn/versions/champion").status_code == 404

    moves = [
        (e["actor"], e["action"], e["summary"]["alias"], e["summary"]["from"], e["summary"]["to"])
        for e in audit_events(three, resource_type="model_alias")
    ]
    assert moves == [
        ("dev", "model_alias.set", "champion", None, 1),
        ("dev", "model_alias.set", "champion", 1, 2),
        ("admin", "model_alias.set", "challenger", None, 3),
        ("dev", "model_alias.delete", "champion", 2, None),
    ]


@pytest.mark.parametrize("alias", ["latest", "v3", "V12", "7", "bad.name", "-x"])
def test_reserved_and_malformed_aliases_are_422(three: Api, alias: str) -> None:
    response = three.put(f"{M}/churn/aliases/{alias}", json={"version": 1})
    assert response.status_code == 422 and "alias" in response.json["errors"]


def test_alias_targets_must_exist_and_be_usable(three: Api) -> None:
    assert three.put(f"{M}/churn/aliases/champion", json={"version": 9}).status_code == 404
    assert three.put(f"{M}/churn/aliases/champion", json={"version": True}).status_code == 400
    assert three.put(f"{M}/nope/aliases/champion", json={"version": 1}).status_code == 404
    assert three.patch(f"{M}/churn/versions/1", json={"archived": True}).status_code == 200
    assert three.put(f"{M}/churn/aliases/champion", json={"version": 1}).status_code == 409


def test_resolve_version_and_model_refs(three: Api) -> None:
    three.put(f"{M}/churn/aliases/champion", json={"version": 2})
    assert parse_model_ref("churn@champion") == ("churn", "champion")
    assert parse_model_ref("churn") == ("churn", None)
    with pytest.raises(InvalidInput):
        parse_model_ref("churn@")
    with three.platform.db.read() as session:
        project = access.get_project(session, "p1")
        for ref, number in ((1, 1), ("3", 3), ("v2", 2), ("latest", 3), ("champion", 2)):
            model, version = resolve_version(session, project, "churn", ref)
            assert model.name == "churn" and version.version == number, ref
        assert resolve_ref(session, project, "churn@champion")[1].version == 2
        assert resolve_ref(session, project, "churn")[1].version == 3
        for bad in ("v9", "nobody"):
            with pytest.raises(NotFound, match="churn"):
                resolve_version(session, project, "churn", bad)
        with pytest.raises(NotFound, match="model 'nope'"):
            resolve_version(session, project, "nope", 1)


def test_lineage_lists_deployments_over_time(three: Api) -> None:
    deploy(three, "churn", 2, environment="staging", weight=100)
    deploy(three, "churn", 2, environment="production", weight=10, event="canary")
    lineage = three.get(f"{M}/churn/versions/2/lineage").json
    assert [(d["environment"], d["weight"]) for d in lineage["deployments"]] == [("production", 10), ("staging", 100)]
    assert [(e["environment"], e["kind"]) for e in lineage["deployment_events"]] == [
        ("staging", "deployed"),
        ("production", "canary"),
    ]
    assert three.get(f"{M}/churn/versions/1/lineage").json["deployments"] == []
