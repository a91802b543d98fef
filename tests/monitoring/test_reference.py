"""Reference data: profiling CSV and Parquet, the reference routes, run artifacts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlplatform.core.errors import InvalidInput
from mlplatform.core.monitoring.profiles import build_profile, load_sorted, read_reference
from tests.monitoring.conftest import SIGNATURE, Monitored, parquet_bytes, reference_frame


def test_profile_of_csv_and_parquet_agree() -> None:
    frame = reference_frame(500)
    from_csv = read_reference(frame.to_csv(index=False).encode(), "csv")
    from_parquet = read_reference(parquet_bytes(frame), "parquet")
    for table in (from_csv, from_parquet):
        profile, arrays = build_profile(table, SIGNATURE, bins=10)
        age = profile["features"]["age"]
        assert age["kind"] == "numerical" and age["count"] == 500 and age["missing"] == 0
        assert age["min"] == pytest.approx(frame["age"].min()) and age["max"] == pytest.approx(frame["age"].max())
        assert len(age["bin_edges"]) == 9
        assert np.allclose(arrays[age["sorted"]], np.sort(frame["age"].to_numpy()))
        plan = profile["features"]["plan"]
        assert plan["kind"] == "categorical" and sum(plan["categories"].values()) == 500
        assert set(plan["categories"]) == {"basic", "plus", "pro"}
        assert profile["output"]["name"] == "prediction" and profile["output"]["kind"] == "categorical"


def test_profile_without_signature_uses_column_types_and_counts_missing() -> None:
    table = pa.table(
        {
            "x": [1.0, None, float("nan"), 4.0],
            "c": ["a", None, "b", "a"],
            "when": pa.array([0, 1, 2, 3], pa.timestamp("s")),
        }
    )
    profile, _ = build_profile(table, None)
    assert set(profile["features"]) == {"x", "c"}
    assert profile["features"]["x"]["missing"] == 2 and profile["features"]["c"]["missing"] == 1


def test_unreadable_or_empty_reference_is_rejected() -> None:
    with pytest.raises(InvalidInput):
        read_reference(b"not parquet", "parquet")
    with pytest.raises(InvalidInput):
        build_profile(pa.table({"other": [1, 2]}), SIGNATURE)
    with pytest.raises(InvalidInput, match="more than one column named 'x1'"):  # was a KeyError, a 500
        read_reference(b"x1,x1\n1,2\n", "csv")


def test_a_signature_whose_output_has_no_name_profiles_its_inputs() -> None:
    """Outputs may be unnamed (``[{"type": "long"}]``): the output column is then ``prediction``."""
    signature = {"inputs": [{"name": "x1", "type": "double"}], "outputs": [{"type": "long"}]}
    profile, _ = build_profile(pa.table({"x1": [1.0, 2.0], "prediction": [0, 1]}), signature)
    assert set(profile["features"]) == {"x1"} and profile["output"]["name"] == "prediction"


def test_reference_route_csv_then_parquet_replaces(monitored: Monitored) -> None:
    api, url = monitored.api, f"{monitored.base}/versions/1/reference"
    assert api.get(url).status_code == 404
    frame = reference_frame(300)
    created = api.put(url, data=frame.to_csv(index=False), headers={"Content-Type": "text/csv"})
    assert created.status_code == 201, created.json
    assert created.json["source"] == "upload" and created.json["row_count"] == 300
    assert "sorted" not in created.json["features"]["age"]
    replaced = api.put(
        url,
        data=parquet_bytes(reference_frame(200, seed=5)),
        headers={"Content-Type": "application/vnd.apache.parquet"},
    )
    assert replaced.status_code == 200 and replaced.json["row_count"] == 200
    assert api.get(url).json["features"]["plan"]["kind"] == "categorical"
    assert api.get(f"{monitored.base}/versions/latest/reference").json["row_count"] == 200  # registry refs work
    bad = api.put(url, data=b"garbage", headers={"Content-Type": "application/octet-stream"})
    assert bad.status_code == 400
    assert api.get(f"{monitored.base}/versions/9/reference").status_code == 404


def test_reference_from_a_run_artifact(monitored: Monitored) -> None:
    api = monitored.api
    experiment = api.post("/api/v1/projects/p1/experiments", json={"name": "e"}).json
    run = api.post(f"/api/v1/projects/p1/experiments/{experiment['id']}/runs", json={}).json
    data = parquet_bytes(reference_frame(100))
    uploaded = api.put(
        f"/api/v1/projects/p1/runs/{run['id']}/artifacts/data/ref.parquet",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert uploaded.status_code == 201
    url = f"{monitored.base}/versions/1/reference"
    response = api.put(url, json={"run_id": run["id"], "artifact_path": "data/ref.parquet"})
    assert response.status_code == 201, response.json
    assert response.json["source"] == "run_artifact" and response.json["row_count"] == 100
    assert api.put(url, json={"run_id": run["id"], "artifact_path": "data/missing.parquet"}).status_code == 404
    assert api.put(url, json={"run_id": run["id"], "artifact_path": "data/ref.txt"}).status_code == 400


def test_sorted_values_are_stored_as_npy(monitored: Monitored) -> None:
    api = monitored.api
    frame = reference_frame(50)
    api.put(
        f"{monitored.base}/versions/1/reference", data=frame.to_csv(index=False), headers={"Content-Type": "text/csv"}
    )
    from mlplatform.core.db.monitoring import ReferenceProfile

    with api.platform.db.read() as session:
        row = session.query(ReferenceProfile).one()
    values = load_sorted(api.platform.artifact_store, row.artifact_prefix, row.profile["features"]["income"]["sorted"])
    assert np.allclose(values, np.sort(frame["income"].to_numpy()))


def test_feature_thresholds_must_name_enabled_metrics(make_platform: Any) -> None:
    from mlplatform.core.errors import ConfigError

    platform = make_platform({"monitoring": {"feature_thresholds": {"age": {"psi": 0.2}}}})
    assert platform.config["monitoring"]["feature_thresholds"] == {"age": {"psi": 0.2}}
    with pytest.raises(ConfigError, match="feature_thresholds"):
        make_platform({"monitoring": {"feature_thresholds": {"age": {"chi_square": 0.2}}}})


def _reference_folder(monitored: Monitored, number: int) -> str:
    from sqlalchemy import select

    from mlplatform.core.db.monitoring import ReferenceProfile

    api = monitored.api
    frame = reference_frame(50)
    url = f"{monitored.base}/versions/{number}/reference"
    assert api.put(url, data=frame.to_csv(index=False), headers={"Content-Type": "text/csv"}).status_code == 201
    with api.platform.db.read() as session:
        prefix = session.scalar(
            select(ReferenceProfile.artifact_prefix).where(ReferenceProfile.version_id == monitored.version_ids[number])
        )
    assert list(api.platform.artifact_store.list(prefix))
    return prefix


def test_deleting_a_version_or_its_model_removes_the_reference_files(api) -> None:
    from sqlalchemy import delete

    from mlplatform.core.db.deployments import Deployment
    from tests.monitoring.conftest import add_model

    monitored = add_model(api, versions=2)  # the deployment holds version 2
    store = api.platform.artifact_store
    first, second = _reference_folder(monitored, 1), _reference_folder(monitored, 2)

    assert api.delete(f"{monitored.base}/versions/1").status_code == 204
    assert list(store.list(first)) == []
    assert list(store.list(second))  # the other version's reference stays

    with api.platform.db.write() as session:
        session.execute(delete(Deployment).where(Deployment.id == monitored.deployment_id))
    assert api.delete(monitored.base).status_code == 204
    assert list(store.list(second)) == []
