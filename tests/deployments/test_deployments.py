"""Deploy, undeploy, status, events, ETags and the refusals, through the API on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from mlplatform.core.db.deployments import Deployment, DeploymentEvent
from mlplatform.core.db.registry import ModelVersion
from mlplatform.core.errors import Conflict, Unprocessable
from mlplatform.core.services import deployments as service
from tests.api_client import Api
from tests.deployments.conftest import BASE, PROJECT, ROWS, add_version, deploy, predict


def test_deploy_then_predict_both_formats(api: Api, tmp_path: Path) -> None:
    add_version(api.platform, tmp_path, 1)
    response = api.put(f"{BASE}/staging", json={"version": "v1"})
    assert response.status_code == 202
    assert response.json["status"] == "pending" and response.headers["ETag"] == f'"{response.json["revision"]}"'
    assert api.platform.jobs.wait_idle(30)

    response = api.get(f"{BASE}/staging")
    body = response.json
    assert body["status"] == "healthy", body
    assert [(t["version"], t["weight"], t["status"]) for t in body["traffic"]] == [(1, 100, "healthy")]
    assert response.headers["ETag"] == f'"{body["revision"]}"'
    kinds = [e["kind"] for e in reversed(body["events"])]
    assert kinds == ["deploy_requested", "deploying", "healthy", "traffic"]

    response = predict(api, {"instances": ROWS}, headers={"X-Request-ID": "req-1"})
    assert response.status_code == 200, response.json
    assert response.json == {"predictions": [0, 1], "version": 1, "request_id": "req-1"}
    assert response.headers["X-MLPlatform-Version"] == "1"

    response = predict(api, {"columns": ["x2", "x1"], "data": [[1.0, 0.0], [0.1, 1.1]]})
    assert response.status_code == 200, response.json
    assert response.json["predictions"] == [0, 1] and len(response.json["request_id"]) == 32

    # what an MLflow scoring client sends to `mlflow models serve`
    for body in (
        {"dataframe_split": {"columns": ["x2", "x1"], "data": [[1.0, 0.0], [0.1, 1.1]], "index": [0, 1]}},
        {"dataframe_records": ROWS},
        {"inputs": {"x1": [0.0, 1.1], "x2": [1.0, 0.1]}},
    ):
        response = predict(api, body)
        assert response.status_code == 200 and response.json["predictions"] == [0, 1], (body, response.json)

    listing = api.get(f"/api/v1/projects/{PROJECT}/deployments").json["items"]
    assert [(d["model"], d["environment"], d["status"], d["traffic"][0]["weight"]) for d in listing] == [
        ("churn", "staging", "healthy", 100)
    ]


def test_deploy_by_alias_and_latest(api: Api, tmp_path: Path) -> None:
    from mlplatform.core.db.registry import ModelAlias

    version_id = add_version(api.platform, tmp_path, 1)
    add_version(api.platform, tmp_path, 2)
    with api.platform.db.write() as session:
        model_id = session.get(ModelVersion, version_id).model_id
        session.add(ModelAlias(model_id=model_id, alias="champion", version_id=version_id, updated_by="test"))
    assert [t["version"] for t in deploy(api, "champion")["traffic"]] == [1]
    assert [t["version"] for t in deploy(api, "latest")["traffic"]] == [2]


def test_refusals(api: Api, tmp_path: Path) -> None:
    add_version(api.platform, tmp_path, 1)
    add_version(api.platform, tmp_path, 2, status="pending")
    add_version(api.platform, tmp_path, 3, status="failed")
    add_version(api.platform, tmp_path, 4, archived=True)

    response = api.put(f"{BASE}/production", json={"version": 1})
    assert response.status_code == 409 and "promotions" in response.json["message"]
    response = api.put(f"{BASE}/qa", json={"version": 1})
    assert response.status_code == 404 and "staging, production" in response.json["message"]
    for number, word in ((2, "pending"), (3, "failed"), (4, "archived")):
        response = api.put(f"{BASE}/staging", json={"version": number})
        assert response.status_code == 409 and word in response.json["message"], response.json
    assert api.put(f"{BASE}/staging", json={"version": 9}).status_code == 404
    assert (
        api.put(f"/api/v1/projects/{PROJECT}/models/nope/deployments/staging", json={"version": 1}).status_code == 404
    )
    assert api.put(f"{BASE}/staging", json={"version": True}).status_code == 422
    assert api.put(f"{BASE}/staging", json={"version": 1, "weight": 0}).status_code == 422
    response = api.put(f"{BASE}/staging", json={"version": 1, "weight": 50})
    assert response.status_code == 422 and "nothing else serves" in str(response.json["errors"])

    # a version of another project is not addressable through this project's model
    assert api.post("/api/v1/projects", json={"name": "other"}).status_code == 201
    add_version(api.platform, tmp_path, 7, project="other")
    assert api.put(f"{BASE}/staging", json={"version": 7}).status_code == 404

    assert predict(api, {"instances": ROWS}).status_code == 404  # never deployed
    assert predict(api, {"instances": ROWS}, env="qa").status_code == 404
    assert api.get(f"{BASE}/staging").status_code == 404
    assert api.delete(f"{BASE}/staging").status_code == 404

    api.user("vera", role="viewer", project=PROJECT)
    assert api.put(f"{BASE}/staging", json={"version": 1}, token="vera").status_code == 403
    deploy(api, 1)
    assert api.delete(f"{BASE}/staging", token="vera").status_code == 403
    assert predict(api, {"instances": ROWS}, token="vera").status_code == 200  # viewers may predict


def test_if_match_and_undeploy(api: Api, tmp_path: Path) -> None:
    add_version(api.platform, tmp_path, 1)
    add_version(api.platform, tmp_path, 2)
    assert api.put(f"{BASE}/staging", json={"version": 1}, headers={"If-Match": "*"}).status_code == 412
    deploy(api, 1)
    etag = api.get(f"{BASE}/staging").headers["ETag"]
    response = api.put(f"{BASE}/staging", json={"version": 2}, headers={"If-Match": '"999"'})
    assert response.status_code == 412 and etag in response.json["message"]
    response = api.put(f"{BASE}/staging", json={"version": 2}, headers={"If-Match": etag})
    assert response.status_code == 202
    assert api.delete(f"{BASE}/staging", headers={"If-Match": etag}).status_code == 412
    assert api.platform.jobs.wait_idle(30)
    current = api.get(f"{BASE}/staging")
    assert [t["version"] for t in current.json["traffic"]] == [2]

    response = api.delete(f"{BASE}/staging", headers={"If-Match": current.headers["ETag"]})
    assert response.status_code == 202
    assert api.platform.jobs.wait_idle(30)
    body = api.get(f"{BASE}/staging").json
    assert (body["status"], body["traffic"]) == ("retired", [])
    assert api.delete(f"{BASE}/staging").status_code == 202  # idempotent
    response = predict(api, {"instances": ROWS})
    assert response.status_code == 404 and "not deployed" in response.json["message"]

    with api.platform.db.read() as session:
        kinds = list(session.scalars(select(DeploymentEvent.kind).order_by(DeploymentEvent.id)))
    assert kinds.count("deploy_requested") == 2 and kinds[-2:] == ["undeploy_requested", "retired"]

    deploy(api, 1)  # a retired deployment can be deployed again
    assert predict(api, {"instances": ROWS}).json["version"] == 1


def test_failing_target_keeps_previous_version_serving(api: Api, tmp_path: Path) -> None:
    add_version(api.platform, tmp_path, 1)
    add_version(api.platform, tmp_path, 2, broken=True)
    deploy(api, 1)
    assert predict(api, {"instances": ROWS}).json["version"] == 1
    body = deploy(api, 2)
    assert body["status"] == "failed" and "cannot load sklearn model" in body["status_message"], body
    traffic = {t["version"]: (t["weight"], t["status"]) for t in body["traffic"]}
    assert traffic[1] == (100, "healthy") and traffic[2][0] == 0 and traffic[2][1] == "failed"
    assert "cannot load" in next(t for t in body["traffic"] if t["version"] == 2)["status_message"]
    assert body["events"][0]["kind"] == "failed" and "cannot load" in body["events"][0]["message"]
    for _ in range(5):
        response = predict(api, {"instances": ROWS})
        assert (response.status_code, response.json["version"]) == (200, 1)
    response = predict(api, {"instances": ROWS}, headers={"X-MLPlatform-Version": "2"})
    assert response.status_code == 409 and "failed" in response.json["message"]


def test_set_traffic_service(api: Api, tmp_path: Path) -> None:
    v1 = add_version(api.platform, tmp_path, 1)
    v2 = add_version(api.platform, tmp_path, 2)
    deploy(api, 1)
    deploy(api, 2, weight=20)
    with api.platform.db.write() as session:
        deployment = session.scalar(select(Deployment))
        before = deployment.revision
        view = service.set_traffic(session, deployment, {v1: 50, v2: 50}, actor="promoter")
        assert {t.version: t.weight for t in view.traffic} == {1: 50, 2: 50} and deployment.revision == before + 1
        with pytest.raises(Unprocessable, match="sum to 100"):
            service.set_traffic(session, deployment, {v1: 50, v2: 40})
        with pytest.raises(Unprocessable, match="not deployed"):
            service.set_traffic(session, deployment, {v1: 50, 999: 50})
    with api.platform.db.read() as session:
        event = session.scalars(select(DeploymentEvent).order_by(DeploymentEvent.id.desc())).first()
        assert (event.kind, event.details, event.actor) == ("traffic", {"weights": {"1": 50, "2": 50}}, "promoter")
    shares = {predict(api, {"instances": ROWS[:1]}).json["version"] for _ in range(40)}
    assert shares == {1, 2}


def test_split_weights() -> None:
    assert service.split_weights({1: 100}, 2, 100) == {2: 100}
    assert service.split_weights({1: 100}, 2, 20) == {2: 20, 1: 80}
    assert service.split_weights({1: 50, 3: 50}, 2, 10) == {2: 10, 1: 45, 3: 45}
    assert sum(service.split_weights({1: 33, 3: 33, 4: 34}, 2, 1).values()) == 100
    assert service.split_weights({}, 2, 30) == {2: 100}


def test_check_deployable_names_the_problem() -> None:
    version = ModelVersion(version=3, status="ready", archived=False, artifact_sha256=None, status_message="")
    with pytest.raises(Conflict, match="digest"):
        service.check_deployable(version, "churn")


def test_the_deployment_list_pages_and_filters(api: Api, tmp_path: Path) -> None:
    """Rows written straight to the table (three models, two environments): the list pages in
    creation order and filters by model, environment and status; bad arguments are a 4xx."""
    from mlplatform.core.db.registry import RegisteredModel

    rows = [("churn", "staging", "healthy"), ("fraud", "staging", "failed"), ("churn", "production", "retired")]
    rows.append(("upsell", "staging", "healthy"))
    for index, (model, _, _) in enumerate(rows):
        add_version(api.platform, tmp_path / str(index), index + 1, model=model)
    with api.platform.db.write() as session:
        models = {m.name: m for m in session.scalars(select(RegisteredModel))}
        for model, environment, status in rows:
            session.add(
                Deployment(
                    project_id=models[model].project_id,
                    model_id=models[model].id,
                    environment=environment,
                    target="local",
                    status=status,
                    updated_by="test",
                )
            )
    url = f"/api/v1/projects/{PROJECT}/deployments"

    first = api.get(url, query_string={"page_size": 3}).json
    assert [(d["model"], d["environment"]) for d in first["items"]] == [(m, e) for m, e, _ in rows[:3]]
    rest = api.get(url, query_string={"page_size": 3, "page_token": first["next_page_token"]}).json
    assert [d["model"] for d in rest["items"]] == ["upsell"] and rest["next_page_token"] is None

    def listed(**filters: str) -> list[tuple[str, str]]:
        return [(d["model"], d["environment"]) for d in api.get(url, query_string=filters).json["items"]]

    assert listed(model="churn") == [("churn", "staging"), ("churn", "production")]
    assert listed(environment="staging", status="healthy") == [("churn", "staging"), ("upsell", "staging")]
    assert listed(model="nope") == []
    assert api.get(url, query_string={"status": "sleeping"}).status_code == 422
    assert api.get(url, query_string={"page_size": 0}).status_code == 422
    assert api.get(url, query_string={"page_token": "%%%"}).status_code in (400, 422)
    assert api.get("/api/v1/projects/nope/deployments").status_code == 404
