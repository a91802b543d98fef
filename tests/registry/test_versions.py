"""Model versions: from a run (copied, digested, validated by the job), by upload, numbering, PATCH."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from sqlalchemy import select, update

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import DeploymentVersion
from mlplatform.core.db.models import User
from mlplatform.core.db.promotions import Promotion
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.model_loading import store_sha256
from mlplatform.core.services import registry_versions
from mlplatform.core.services.registry_validation import validate_model_version
from tests.api_client import Api
from tests.registry.conftest import EXAMPLE, M, P, create_model, make_run, register, registered_ready, upload_folder
from tests.registry.helpers import deploy


def test_register_from_a_run_becomes_ready_with_lineage_and_signature(reg: Api, sklearn_model_dir: Path) -> None:
    create_model(reg, "churn")
    run = make_run(
        reg,
        params={"C": "0.5"},
        metrics=[{"key": "auc", "value": 0.8, "step": 0}, {"key": "auc", "value": 0.93, "step": 5}],
    )
    upload_folder(reg, run["id"], sklearn_model_dir)
    response = register(
        reg, "churn", run["id"], token="dev", input_example=EXAMPLE, description="first", tags={"k": "v"}
    )
    assert response.status_code == 201, response.json
    created = response.json
    assert created["version"] == 1 and created["finalized"] and created["flavor"] == "sklearn"
    assert (
        created["created_by"] == "dev" and created["run_id"] == run["id"] and created["source_git_commit"] == "abc123"
    )
    assert {c["name"]: c["type"] for c in created["signature"]["inputs"]} == {
        "age": "integer",
        "income": "number",
        "city": "string",
    }
    assert reg.platform.jobs.wait_idle(10)

    version = reg.get(f"{M}/churn/versions/1", token="viewer").json
    assert version["status"] == "ready", version
    assert version["signature"]["outputs"] == [{"name": "prediction", "type": "integer", "nullable": False}]
    store = reg.platform.artifact_store
    assert version["artifact_sha256"] == store_sha256(store, version["artifact_uri"])
    files = [f["path"] for f in reg.get(f"{M}/churn/versions/1/files").json["items"]]
    assert files == ["input_example.json", "mlplatform-model.json", "model.joblib"]

    # the version is a copy: changing the run's files later does not change it
    assert reg.put(f"{P}/runs/{run['id']}/artifacts/model/model.joblib", data=b"overwritten").status_code == 201
    assert store_sha256(store, version["artifact_uri"]) == version["artifact_sha256"]
    downloaded = reg.get(f"{M}/churn/versions/1/files/model.joblib")
    assert downloaded.status_code == 200 and downloaded.data == (sklearn_model_dir / "model.joblib").read_bytes()

    lineage = reg.get(f"{M}/churn/versions/1/lineage", token="viewer").json
    assert lineage["run"]["params"] == {"C": "0.5"} and lineage["run"]["metrics"] == {"auc": 0.93}
    assert lineage["run"]["experiment_name"] == "exp" and lineage["run"]["exists"] is True
    assert lineage["artifact_sha256"] == version["artifact_sha256"] and lineage["deployments"] == []
    assert reg.get(f"{M}/churn").json["latest_version"] == 1


def test_versions_are_numbered_per_model(reg: Api, sklearn_model_dir: Path) -> None:
    create_model(reg, "a")
    create_model(reg, "b")
    run = make_run(reg)
    upload_folder(reg, run["id"], sklearn_model_dir)
    numbers = [register(reg, name, run["id"]).json["version"] for name in ("a", "a", "b", "a")]
    assert numbers == [1, 2, 1, 3]
    assert reg.platform.jobs.wait_idle(10)
    listed = reg.get(f"{M}/a/versions").json["items"]
    assert [v["version"] for v in listed] == [1, 2, 3] and all(v["status"] == "ready" for v in listed)
    assert reg.get(f"{M}/nope/versions").status_code == 404
    assert register(reg, "nope", run["id"]).status_code == 404


def test_concurrent_registrations_get_distinct_numbers(reg: Api) -> None:
    create_model(reg, "churn")
    identity = _identity(reg)
    numbers: list[int] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            view = registry_versions.begin_version(
                reg.platform, identity, "p1", "churn", registry_versions.check_spec()
            )
            numbers.append(view.version.version)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and sorted(numbers) == [1, 2, 3, 4, 5, 6]


def test_a_broken_artifact_fails_with_the_reason(reg: Api, tmp_path: Path) -> None:
    create_model(reg, "churn")
    run = make_run(reg)
    (tmp_path / "model.joblib").write_bytes(b"this is not a pickle")
    upload_folder(reg, run["id"], tmp_path)
    assert register(reg, "churn", run["id"]).status_code == 201
    assert reg.platform.jobs.wait_idle(10)
    version = reg.get(f"{M}/churn/versions/1").json
    assert version["status"] == "failed" and "cannot load sklearn model model.joblib" in version["status_message"]
    assert reg.get(f"{M}/churn").json["latest_version"] is None
    assert reg.get(f"{M}/churn/versions/latest").status_code == 404


def test_an_example_the_model_cannot_take_fails_the_version(reg: Api, sklearn_model_dir: Path) -> None:
    create_model(reg, "churn")
    example = [{"age": 31, "income": 1.0}]  # no city: the pipeline's column transformer refuses it
    body = registered_ready(reg, sklearn_model_dir, input_example=example)
    assert body["status"] == "failed" and "city" in body["status_message"]


def test_registration_errors_are_reported_before_anything_is_written(reg: Api, sklearn_model_dir: Path) -> None:
    create_model(reg, "churn")
    run = make_run(reg)
    nothing = register(reg, "churn", run["id"])
    assert nothing.status_code == 422 and "no artifacts under 'model'" in nothing.json["message"]
    assert register(reg, "churn", "0" * 32).status_code == 404
    upload_folder(reg, run["id"], sklearn_model_dir)
    assert register(reg, "churn", run["id"], flavor="python_function").status_code == 400
    assert register(reg, "churn", run["id"], input_example=[{"x": None}]).status_code == 400
    assert register(reg, "churn", run["id"], signature={"inputs": [{"name": "x", "type": "tensor"}]}).status_code == 400
    assert reg.post(f"{M}/churn/versions", json={}).status_code == 422
    assert reg.post(f"{M}/churn/versions", json={"run_id": run["id"]}).status_code == 422
    assert reg.get(f"{M}/churn/versions").json["items"] == []


def test_upload_then_finalize(reg: Api, sklearn_model_dir: Path) -> None:
    create_model(reg, "churn")
    run = make_run(reg, params={"C": "2"})
    started = reg.post(
        f"{M}/churn/versions", json={"source": "upload", "run_id": run["id"], "input_example": EXAMPLE}, token="dev"
    )
    assert started.status_code == 201, started.json
    assert (
        started.json["status"] == "pending"
        and not started.json["finalized"]
        and started.json["artifact_sha256"] is None
    )
    assert reg.post(f"{M}/churn/versions", json={"source": "upload", "flavor": "no_such_flavor"}).status_code == 400
    empty = reg.post(f"{M}/churn/versions", json={"source": "upload"}).json["version"]
    assert reg.post(f"{M}/churn/versions/{empty}/finalize").status_code == 422  # nothing uploaded

    for file in sorted(sklearn_model_dir.iterdir()):
        put = reg.put(f"{M}/churn/versions/1/files/{file.name}", data=file.read_bytes(), token="dev")
        assert put.status_code == 201, put.json
    assert reg.put(f"{M}/churn/versions/1/files/../escape", data=b"x").status_code in (400, 404)
    finalized = reg.post(f"{M}/churn/versions/1/finalize", token="dev")
    assert finalized.status_code == 200 and finalized.json["finalized"] and finalized.json["flavor"] == "sklearn"
    assert reg.post(f"{M}/churn/versions/1/finalize").json["artifact_sha256"] == finalized.json["artifact_sha256"]
    assert reg.put(f"{M}/churn/versions/1/files/extra.txt", data=b"x").status_code == 409
    assert reg.platform.jobs.wait_idle(10)
    version = reg.get(f"{M}/churn/versions/v1").json
    assert version["status"] == "ready", version
    assert reg.get(f"{M}/churn/versions/1/lineage").json["run"]["params"] == {"C": "2"}


def test_the_job_refuses_bytes_that_changed_after_registration(reg: Api, sklearn_model_dir: Path) -> None:
    create_model(reg, "churn")
    reg.post(f"{M}/churn/versions", json={"source": "upload"})
    for file in sorted(sklearn_model_dir.iterdir()):
        reg.put(f"{M}/churn/versions/1/files/{file.name}", data=file.read_bytes())
    sha = store_sha256(reg.platform.artifact_store, reg.get(f"{M}/churn/versions/1").json["artifact_uri"])
    # Record the digest without enqueueing the job, tamper, then run the job by hand.
    with reg.platform.db.write() as session:
        version = session.scalar(select(ModelVersion))
        version.artifact_sha256, version.flavor = sha, "sklearn"
        uri, version_id = version.artifact_uri, version.id
    reg.platform.artifact_store.put(uri + "model.joblib", io.BytesIO(b"evil"), 4)
    validate_model_version(reg.platform, version_id)
    body = reg.get(f"{M}/churn/versions/1").json
    assert body["status"] == "failed" and "digest mismatch" in body["status_message"]


def test_patch_describes_tags_and_archives(reg: Api, sklearn_model_dir: Path) -> None:
    create_model(reg, "churn")
    registered_ready(reg, sklearn_model_dir)
    registered_ready(reg, sklearn_model_dir)
    assert reg.get(f"{M}/churn/versions/latest").json["version"] == 2
    patched = reg.patch(
        f"{M}/churn/versions/2", json={"description": "d", "tags": {"a": "1"}, "archived": True}, token="dev"
    )
    assert patched.status_code == 200 and patched.json["archived"] and patched.json["tags"] == {"a": "1"}
    assert reg.get(f"{M}/churn/versions/latest").json["version"] == 1
    assert [v["version"] for v in reg.get(f"{M}/churn/versions", query_string={"archived": "false"}).json["items"]] == [
        1
    ]
    assert reg.patch(f"{M}/churn/versions/2", json={"status": "ready"}).status_code == 422
    assert reg.patch(f"{M}/churn/versions/9", json={"description": "x"}).status_code == 404
    events = reg.get(f"{P}/audit", query_string={"action": "model_version.update"}).json["items"]
    assert events[0]["summary"]["archived"] == {"from": False, "to": True}


def _identity(client: Api) -> Identity:
    with client.platform.db.read() as session:
        user = session.scalar(select(User).where(User.username == "dev"))
        return Identity(username="dev", backend="token", user_id=user.id)


def test_deleting_a_version_removes_it_its_aliases_and_files_and_retires_its_number(
    reg: Api, sklearn_model_dir: Path
) -> None:
    create_model(reg, "churn")
    registered_ready(reg, sklearn_model_dir)
    second = registered_ready(reg, sklearn_model_dir)
    assert reg.put(f"{M}/churn/aliases/champion", json={"version": 2}).status_code == 200
    store = reg.platform.artifact_store
    assert list(store.list(second["artifact_uri"]))

    assert reg.delete(f"{M}/churn/versions/2", token="dev").status_code == 403  # maintainers delete
    assert reg.delete(f"{M}/churn/versions/champion", token="maint").status_code == 204

    assert reg.get(f"{M}/churn/versions/2").status_code == 404
    assert reg.get(f"{M}/churn/versions/champion").status_code == 404
    assert reg.get(f"{M}/churn").json["aliases"] == {}
    assert [v["version"] for v in reg.get(f"{M}/churn/versions").json["items"]] == [1]
    assert list(store.list(second["artifact_uri"])) == []
    assert list(store.list(reg.get(f"{M}/churn/versions/1").json["artifact_uri"]))  # the other version's files stay
    [event] = reg.get(f"{P}/audit", query_string={"action": "model_version.delete"}).json["items"]
    assert event["actor"] == "maint"
    assert event["summary"]["version"] == 2 and event["summary"]["aliases"] == ["champion"]

    assert registered_ready(reg, sklearn_model_dir)["version"] == 3  # a deleted number is not given again
    assert reg.delete(f"{M}/churn/versions/2", token="maint").status_code == 404
    assert reg.delete(f"{M}/nope/versions/1", token="maint").status_code == 404


def test_a_validation_that_runs_after_its_version_was_deleted_changes_nothing(
    reg: Api, sklearn_model_dir: Path
) -> None:
    """The job outlives the row it was queued for: it finds no version and records nothing."""
    create_model(reg, "churn")
    registered_ready(reg, sklearn_model_dir)
    with reg.platform.db.read() as session:
        version_id = session.scalar(select(ModelVersion.id).where(ModelVersion.version == 1))
    assert reg.delete(f"{M}/churn/versions/1", token="maint").status_code == 204
    before = reg.get(f"{P}/audit").json["items"]

    validate_model_version(reg.platform, version_id)

    assert reg.get(f"{P}/audit").json["items"] == before
    assert reg.get(f"{M}/churn/versions/1").status_code == 404
    with reg.platform.db.read() as session:
        assert session.get(ModelVersion, version_id) is None


def test_a_deployed_or_promoting_version_cannot_be_deleted(reg: Api, sklearn_model_dir: Path) -> None:
    create_model(reg, "churn")
    registered_ready(reg, sklearn_model_dir)
    registered_ready(reg, sklearn_model_dir)
    deploy(reg, "churn", 1)
    refused = reg.delete(f"{M}/churn/versions/1", token="maint")
    assert refused.status_code == 409 and "undeploy it" in refused.json["message"], refused.json
    assert refused.json["errors"] == {"version": ["deployed"]}

    with reg.platform.db.write() as session:
        version = session.scalar(select(ModelVersion).where(ModelVersion.version == 2))
        model = session.get(RegisteredModel, version.model_id)
        session.add(
            Promotion(
                project_id=model.project_id,
                model_id=model.id,
                version_id=version.id,
                environment="production",
                strategy="direct",
                steps=[100],
                bake_seconds=0,
                state="pending_approval",
                requested_by="dev",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    refused = reg.delete(f"{M}/churn/versions/2", token="maint")
    assert refused.status_code == 409 and "being promoted" in refused.json["message"], refused.json
    assert [v["version"] for v in reg.get(f"{M}/churn/versions").json["items"]] == [1, 2]

    with reg.platform.db.write() as session:  # nothing deployed any more: only the promotion holds the model
        session.execute(update(DeploymentVersion).values(status="retired", weight=0))
    refused = reg.delete(f"{M}/churn", token="maint")
    assert refused.status_code == 409 and "v2 promotion under way" in refused.json["errors"]["versions"], refused.json
    assert reg.get(f"{M}/churn/versions/2").status_code == 200
