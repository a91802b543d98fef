"""The in-house ``change_ticket`` promotion policy: on its own, and as the platform runs it
when a promotion is requested (the package is found through its entry point)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mlplatform_inhouse.policies import change_ticket

from mlplatform.core.backends import Identity
from mlplatform.core.db import migrate
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.errors import Unprocessable
from mlplatform.core.platform import Platform
from mlplatform.core.services import projects, promotions


@dataclass
class FakeVersion:
    version: int = 3
    tags: dict[str, str] = field(default_factory=dict)


def test_the_policy_alone() -> None:
    production = {"name": "production", "policies": {"require_ticket": r"CHG-\d+"}}
    assert change_ticket(FakeVersion(), {"name": "staging", "policies": {}}) == []
    (result,) = change_ticket(FakeVersion(), production)
    assert not result.passed and "no 'ticket' tag" in result.message
    (result,) = change_ticket(FakeVersion(tags={"ticket": "JIRA-9"}), production)
    assert not result.passed and "does not match" in result.message
    (result,) = change_ticket(FakeVersion(tags={"ticket": "CHG-42"}), production)
    assert result.passed and result.details == {"ticket": "CHG-42"}
    (result,) = change_ticket(FakeVersion(tags={"ticket": "anything"}), {"policies": {"require_ticket": True}})
    assert result.passed


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate.upgrade(url)
    built = Platform(
        {
            "data_dir": str(tmp_path / "data"),
            "database": {"url": url},
            "environments": [
                {"name": "staging", "target": "local", "approvals": 1},  # no rollout job runs in this test
                {"name": "production", "target": "local", "approvals": 1, "policies": {"require_ticket": r"CHG-\d+"}},
            ],
        }
    )
    yield built
    built.close()


def _versions(platform: Platform, tags: list[dict[str, str]]) -> None:
    """Project ``shop``, model ``churn`` and one ready version per entry of ``tags``."""
    with platform.db.write() as session:
        project = projects.create_project(session, Identity("admin", "test", is_admin=True), "shop")
        model = RegisteredModel(project_id=project.id, name="churn", created_by="admin")
        session.add(model)
        session.flush()
        for number, version_tags in enumerate(tags, start=1):
            session.add(
                ModelVersion(
                    model_id=model.id,
                    version=number,
                    status="ready",
                    artifact_uri=f"m/{number}/",
                    artifact_sha256="0" * 64,
                    tags=version_tags,
                    created_by="admin",
                )
            )


def test_the_platform_runs_it_on_request(platform: Platform) -> None:
    admin = Identity("admin", "test", is_admin=True)
    _versions(platform, [{}, {"ticket": "CHG-7"}])
    with platform.db.write() as session, pytest.raises(Unprocessable) as refused:
        promotions.request_promotion(session, admin, "shop", "churn", version=1, to="production", platform=platform)
    (check,) = refused.value.errors["checks"]
    assert (check["policy"], check["plugin"]) == ("change_ticket", "inhouse")
    with platform.db.write() as session:
        assert promotions.request_promotion(
            session, admin, "shop", "churn", version=1, to="staging", platform=platform
        )["checks"] == {"request": []}
        body = promotions.request_promotion(
            session, admin, "shop", "churn", version=2, to="production", platform=platform
        )
    assert body["state"] == "pending_approval"
    assert [c["message"] for c in body["checks"]["request"] if c["policy"] == "change_ticket"] == [
        "change ticket CHG-7"
    ]
