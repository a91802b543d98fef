"""The Python SDK: ``Client(url, token)`` or ``MLPLATFORM_URL`` / ``MLPLATFORM_TOKEN``.

    client = Client(project="churn")
    with client.start_run(experiment="baseline", params={"lr": 0.01}) as run:
        for step in range(100):
            run.log_metric("loss", loss, step=step)
        run.log_artifact("model.pkl")

Metrics are buffered and sent in batches from a background thread (a bounded queue; flushed
on exit, on ``run.flush()`` and when a batch is full or old enough). Every request is retried
on 429, 5xx and connection errors with exponential backoff; a batch keeps its
``Idempotency-Key`` across retries so the server never stores it twice. If the ``with`` block
raises, the run is marked failed. One ``requests.Session`` keeps the connection alive.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

RETRY_STATUSES = {429, 500, 502, 503, 504}
CHUNK = 1024 * 1024


class ApiError(Exception):
    """The server answered with an error: ``status``, ``message`` and per-field ``errors``."""

    def __init__(self, status: int, message: str, errors: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.errors = dict(errors or {})


# --- typed results ------------------------------------------------------------------------


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _number(value: Any) -> float:
    return float(value)  # "NaN", "Infinity" and "-Infinity" parse as floats


@dataclass(frozen=True)
class Project:
    name: str
    description: str
    created_by: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Project:
        return cls(body["name"], body.get("description", ""), body.get("created_by", ""))


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    description: str
    tags: dict[str, str]
    lifecycle_stage: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Experiment:
        return cls(
            body["id"], body["name"], body.get("description", ""), dict(body.get("tags", {})), body["lifecycle_stage"]
        )


@dataclass(frozen=True)
class MetricPoint:
    step: int
    value: float
    timestamp: int


@dataclass(frozen=True)
class Run:
    id: str
    experiment_id: int
    name: str
    status: str
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, MetricPoint]
    parent_run_id: str | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Run:
        metrics = {
            key: MetricPoint(m["step"], _number(m["value"]), m["timestamp"])
            for key, m in body.get("metrics", {}).items()
        }
        return cls(
            body["id"],
            body["experiment_id"],
            body["name"],
            body["status"],
            _time(body.get("start_time")),
            _time(body.get("end_time")),
            dict(body.get("params", {})),
            dict(body.get("tags", {})),
            metrics,
            body.get("parent_run_id"),
        )


@dataclass(frozen=True)
class Artifact:
    path: str
    size: int


# --- HTTP ---------------------------------------------------------------------------------


class Transport:
    """One keep-alive session with retries and the platform's error shape."""

    def __init__(self, url: str, token: str, *, timeout: float = 30, retries: int = 5, backoff: float = 0.5) -> None:
        self.base = url.rstrip("/") + "/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def request(
        self, method: str, path: str, *, idempotency_key: str | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        body = kwargs.get("data")
        replayable = body is None or isinstance(body, (bytes, str))
        for attempt in range(self.retries + 1):
            try:
                response = self.session.request(
                    method, self.base + path, headers=headers, timeout=self.timeout, **kwargs
                )
            except requests.ConnectionError:
                if attempt == self.retries or not replayable:
                    raise
                time.sleep(self._delay(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries and replayable:
                time.sleep(self._delay(attempt, response.headers.get("Retry-After")))
                continue
            if response.status_code >= 400:
                raise _error(response)
            return response
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), 60.0)
        return min(self.backoff * 2**attempt, 30.0)

    def close(self) -> None:
        self.session.close()


def _error(response: requests.Response) -> ApiError:
    try:
        body = response.json()
        return ApiError(response.status_code, body.get("message", response.reason), body.get("errors"))
    except ValueError:
        return ApiError(response.status_code, response.text[:200] or response.reason)


def _wire(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float(value)


# --- the client ---------------------------------------------------------------------------


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        project: str | None = None,
        timeout: float = 30,
        retries: int = 5,
    ) -> None:
        url = url or os.environ.get("MLPLATFORM_URL")
        token = token or os.environ.get("MLPLATFORM_TOKEN")
        if not url or not token:
            raise ValueError("give url and token, or set MLPLATFORM_URL and MLPLATFORM_TOKEN")
        self.http = Transport(url, token, timeout=timeout, retries=retries)
        self.project = project or os.environ.get("MLPLATFORM_PROJECT")

    def _p(self, project: str | None) -> str:
        name = project or self.project
        if not name:
            raise ValueError("no project: pass project=... or set MLPLATFORM_PROJECT")
        return f"/projects/{name}"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # projects and experiments

    def whoami(self) -> dict[str, Any]:
        return self.http.json("GET", "/whoami")

    def create_project(self, name: str, description: str = "") -> Project:
        return Project.from_json(self.http.json("POST", "/projects", json={"name": name, "description": description}))

    def get_project(self, name: str) -> Project:
        return Project.from_json(self.http.json("GET", f"/projects/{name}"))

    def create_experiment(
        self, name: str, *, description: str = "", tags: Mapping[str, str] | None = None, project: str | None = None
    ) -> Experiment:
        body = {"name": name, "description": description, "tags": dict(tags or {})}
        return Experiment.from_json(self.http.json("POST", f"{self._p(project)}/experiments", json=body))

    def list_experiments(self, *, name: str | None = None, project: str | None = None) -> list[Experiment]:
        return [
            Experiment.from_json(e)
            for e in self._pages(f"{self._p(project)}/experiments", {"name": name} if name else {})
        ]

    def get_experiment_by_name(self, name: str, *, project: str | None = None) -> Experiment | None:
        return next((e for e in self.list_experiments(name=name, project=project) if e.name == name), None)

    def get_or_create_experiment(self, name: str, *, project: str | None = None) -> Experiment:
        found = self.get_experiment_by_name(name, project=project)
        if found is not None:
            return found
        try:
            return self.create_experiment(name, project=project)
        except ApiError as exc:
            if exc.status != 409:
                raise
            found = self.get_experiment_by_name(name, project=project)
            assert found is not None
            return found

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            page = self.http.json(
                "GET", path, params={**params, "page_size": 1000, **({"page_token": token} if token else {})}
            )
            yield from page["items"]
            token = page.get("next_page_token")
            if not token:
                return

    # runs

    def create_run(
        self,
        experiment: str | int,
        *,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        source: Mapping[str, str] | None = None,
        project: str | None = None,
    ) -> Run:
        experiment_id = (
            experiment if isinstance(experiment, int) else self.get_or_create_experiment(experiment, project=project).id
        )
        body: dict[str, Any] = {"source": dict(source or {})}
        if name:
            body["name"] = name
        if params:
            body["params"] = {k: str(v) for k, v in params.items()}
        if tags:
            body["tags"] = dict(tags)
        if parent_run_id:
            body["parent_run_id"] = parent_run_id
        return Run.from_json(self.http.json("POST", f"{self._p(project)}/experiments/{experiment_id}/runs", json=body))

    def start_run(self, experiment: str | int, **kwargs: Any) -> ActiveRun:
        """Create a run and return it as a context manager that logs in the background."""
        project = kwargs.get("project")
        return ActiveRun(self, self.create_run(experiment, **kwargs), project)

    def get_run(self, run_id: str, *, project: str | None = None) -> Run:
        return Run.from_json(self.http.json("GET", f"{self._p(project)}/runs/{run_id}"))

    def update_run(
        self, run_id: str, *, status: str | None = None, name: str | None = None, project: str | None = None
    ) -> Run:
        body = {k: v for k, v in {"status": status, "name": name}.items() if v is not None}
        return Run.from_json(self.http.json("PATCH", f"{self._p(project)}/runs/{run_id}", json=body))

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: list[tuple[str, float, int, int]] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        project: str | None = None,
    ) -> None:
        """Send one batch: metrics as (key, value, step, timestamp_ms) tuples."""
        body: dict[str, Any] = {}
        if metrics:
            body["metrics"] = [{"key": k, "value": _wire(v), "step": s, "timestamp": t} for k, v, s, t in metrics]
        if params:
            body["params"] = {k: str(v) for k, v in params.items()}
        if tags:
            body["tags"] = dict(tags)
        self.http.request(
            "POST",
            f"{self._p(project)}/runs/{run_id}/log",
            json=body,
            idempotency_key=idempotency_key or uuid.uuid4().hex,
        )

    def metric_history(
        self, run_id: str, key: str, *, max_points: int | None = None, project: str | None = None
    ) -> list[MetricPoint]:
        points: list[MetricPoint] = []
        params: dict[str, Any] = {"max_points": max_points} if max_points else {}
        token = None
        while True:
            page = self.http.json(
                "GET",
                f"{self._p(project)}/runs/{run_id}/metrics/{key}",
                params={**params, **({"page_token": token} if token else {})},
            )
            points += [MetricPoint(p["step"], _number(p["value"]), p["timestamp"]) for p in page["items"]]
            token = page.get("next_page_token")
            if not token or max_points:
                return points

    def search_runs(
        self,
        filter: str = "",
        *,
        order_by: list[str] | None = None,
        experiment_ids: list[int] | None = None,
        max_results: int = 1000,
        project: str | None = None,
    ) -> list[Run]:
        runs: list[Run] = []
        token = None
        while len(runs) < max_results:
            body = {
                "filter": filter,
                "order_by": order_by or [],
                "experiment_ids": experiment_ids or [],
                "page_size": min(1000, max_results - len(runs)),
                "page_token": token,
            }
            page = self.http.json("POST", f"{self._p(project)}/runs/search", json=body)
            runs += [Run.from_json(r) for r in page["items"]]
            token = page.get("next_page_token")
            if not token:
                break
        return runs

    # artifacts

    def upload_artifact(
        self,
        run_id: str,
        local_path: str | os.PathLike[str],
        artifact_path: str | None = None,
        *,
        progress: Callable[[int], None] | None = None,
        project: str | None = None,
    ) -> Artifact:
        """Upload a file (streamed) or every file of a folder; returns the last uploaded."""
        local = Path(local_path)
        if local.is_dir():
            uploaded = None
            for file in sorted(p for p in local.rglob("*") if p.is_file()):
                rel = file.relative_to(local).as_posix()
                uploaded = self.upload_artifact(
                    run_id, file, f"{artifact_path}/{rel}" if artifact_path else rel, progress=progress, project=project
                )
            if uploaded is None:
                raise ValueError(f"{local} has no files")
            return uploaded
        target = artifact_path or local.name
        size = local.stat().st_size
        with local.open("rb") as stream:
            body = _ProgressReader(stream, size, progress) if progress else stream
            response = self.http.request(
                "PUT",
                f"{self._p(project)}/runs/{run_id}/artifacts/{target}",
                data=body,
                headers={"Content-Type": "application/octet-stream"},
            )
        item = response.json()
        return Artifact(item["path"], item["size"])

    def download_artifact(
        self,
        run_id: str,
        path: str,
        destination: str | os.PathLike[str],
        *,
        progress: Callable[[int], None] | None = None,
        project: str | None = None,
    ) -> Path:
        dest = Path(destination)
        if dest.is_dir():
            dest = dest / Path(path).name
        response = self.http.request("GET", f"{self._p(project)}/runs/{run_id}/artifacts/{path}", stream=True)
        with dest.open("wb") as out:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
                if progress:
                    progress(len(chunk))
        return dest

    def list_artifacts(self, run_id: str, prefix: str = "", *, project: str | None = None) -> list[Artifact]:
        body = self.http.json("GET", f"{self._p(project)}/runs/{run_id}/artifacts", params={"prefix": prefix})
        return [Artifact(i["path"], i["size"]) for i in body["items"]]

    # model registry

    def create_model(
        self, name: str, *, description: str = "", tags: Mapping[str, str] | None = None, project: str | None = None
    ) -> RegisteredModel:
        body = {"name": name, "description": description, "tags": dict(tags or {})}
        return RegisteredModel.from_json(self.http.json("POST", f"{self._p(project)}/models", json=body))

    def get_model(self, name: str, *, project: str | None = None) -> RegisteredModel:
        return RegisteredModel.from_json(self.http.json("GET", f"{self._p(project)}/models/{name}"))

    def list_models(
        self, *, name: str | None = None, tags: list[str] | None = None, project: str | None = None
    ) -> list[RegisteredModel]:
        """Models whose name contains ``name``; each ``tags`` item is ``key`` or ``key=value``."""
        params: dict[str, Any] = {k: v for k, v in (("name", name), ("tag", tags)) if v}
        return [RegisteredModel.from_json(m) for m in self._pages(f"{self._p(project)}/models", params)]

    def register_model(
        self,
        run_id: str,
        artifact_path: str = "model",
        *,
        name: str,
        input_example: Any = None,
        flavor: str | None = None,
        signature: Mapping[str, Any] | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        project: str | None = None,
    ) -> ModelVersion:
        """Register the run's ``artifact_path`` folder as the next version of ``name`` (created if missing).

        The server copies the files and validates the model in the background: the version
        comes back ``pending``; ``wait_for_version`` waits for ``ready`` or ``failed``.
        ``input_example`` (a DataFrame or a list of records) gives the signature when
        ``signature`` is not given, and the validation job predicts on it.
        """
        body = {
            "run_id": run_id,
            "artifact_path": artifact_path,
            "flavor": flavor,
            "signature": signature,
            "input_example": _records(input_example),
            "description": description,
            "tags": dict(tags or {}),
        }
        return self._new_version(name, body, project)

    def register_model_files(
        self,
        local_path: str | os.PathLike[str],
        *,
        name: str,
        run_id: str | None = None,
        input_example: Any = None,
        flavor: str | None = None,
        signature: Mapping[str, Any] | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        project: str | None = None,
    ) -> ModelVersion:
        """Upload a local model folder as the next version of ``name``: start, PUT each file, finalize.

        ``run_id`` only records lineage here. Returns the finalized (still ``pending``) version.
        """
        body = {
            "source": "upload",
            "run_id": run_id,
            "flavor": flavor,
            "signature": signature,
            "input_example": _records(input_example),
            "description": description,
            "tags": dict(tags or {}),
        }
        version = self._new_version(name, body, project)
        base = f"{self._p(project)}/models/{name}/versions/{version.version}"
        local = Path(local_path)
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            with file.open("rb") as stream:
                self.http.request(
                    "PUT",
                    f"{base}/files/{file.relative_to(local).as_posix()}",
                    data=stream,
                    headers={"Content-Type": "application/octet-stream"},
                )
        return ModelVersion.from_json(self.http.json("POST", f"{base}/finalize"))

    def _new_version(self, name: str, body: dict[str, Any], project: str | None) -> ModelVersion:
        path = f"{self._p(project)}/models/{name}/versions"
        body = {k: v for k, v in body.items() if v is not None}
        try:
            return ModelVersion.from_json(self.http.json("POST", path, json=body))
        except ApiError as exc:
            if exc.status != 404 or "model" not in exc.errors:
                raise
        try:
            self.create_model(name, project=project)
        except ApiError as exc:
            if exc.status != 409:  # created meanwhile by someone else: fine
                raise
        return ModelVersion.from_json(self.http.json("POST", path, json=body))

    def get_model_version(self, name: str, ref: str | int | None = None, *, project: str | None = None) -> ModelVersion:
        """A version by number, ``"v3"``, ``"latest"`` or alias; ``name`` may be ``"churn@champion"``."""
        if ref is None:
            name, _, at = name.partition("@")
            ref = at or "latest"
        return ModelVersion.from_json(self.http.json("GET", f"{self._p(project)}/models/{name}/versions/{ref}"))

    def list_model_versions(
        self, name: str, *, status: str | None = None, project: str | None = None
    ) -> list[ModelVersion]:
        params = {"status": status} if status else {}
        return [ModelVersion.from_json(v) for v in self._pages(f"{self._p(project)}/models/{name}/versions", params)]

    def update_model_version(
        self, name: str, ref: str | int, *, project: str | None = None, **changes: Any
    ) -> ModelVersion:
        """Change ``description``, ``tags`` (merged; None removes) or ``archived``."""
        return ModelVersion.from_json(
            self.http.json("PATCH", f"{self._p(project)}/models/{name}/versions/{ref}", json=changes)
        )

    def delete_model_version(self, name: str, ref: str | int, *, project: str | None = None) -> None:
        """Delete a version with its aliases and files; its number is not given again (409 while deployed)."""
        self.http.request("DELETE", f"{self._p(project)}/models/{name}/versions/{ref}")

    def set_alias(self, name: str, alias: str, version: str | int, *, project: str | None = None) -> ModelVersion:
        """Point ``alias`` at ``version`` (moving it if needed); returns that version."""
        self.http.json("PUT", f"{self._p(project)}/models/{name}/aliases/{alias}", json={"version": version})
        return self.get_model_version(name, alias, project=project)

    def delete_alias(self, name: str, alias: str, *, project: str | None = None) -> None:
        self.http.request("DELETE", f"{self._p(project)}/models/{name}/aliases/{alias}")

    def model_version_lineage(self, name: str, ref: str | int, *, project: str | None = None) -> dict[str, Any]:
        return self.http.json("GET", f"{self._p(project)}/models/{name}/versions/{ref}/lineage")

    def wait_for_version(
        self,
        name: str,
        version: str | int,
        timeout: float = 300,
        *,
        poll: float = 0.5,
        raise_on_failure: bool = True,
        project: str | None = None,
    ) -> ModelVersion:
        """Poll until the version is ``ready`` (returned) or ``failed`` (``ModelVersionFailed``
        unless ``raise_on_failure=False``). ``TimeoutError`` if still pending after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.get_model_version(name, version, project=project)
            if current.status == "failed" and raise_on_failure:
                raise ModelVersionFailed(current)
            if current.status != "pending":
                return current
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{name} v{current.version} is still pending after {timeout:g}s")
            time.sleep(poll)

    # deployments and predictions

    def deploy(
        self,
        model: str,
        env: str,
        version: str | int,
        *,
        weight: int | None = None,
        if_match: str | None = None,
        wait: bool = False,
        timeout: float = 300,
        project: str | None = None,
    ) -> Deployment:
        """Deploy ``version`` (a number, ``"v3"``, ``"latest"`` or an alias) of ``model`` to ``env``.

        The server answers at once (``pending``); ``wait=True`` waits for ``healthy``
        (``DeploymentFailed`` if it fails). ``weight`` below 100 adds it beside what serves.
        """
        body: dict[str, Any] = {"version": version, **({"weight": weight} if weight is not None else {})}
        headers = {"If-Match": if_match} if if_match else {}
        deployment = Deployment.from_json(
            self.http.json("PUT", f"{self._p(project)}/models/{model}/deployments/{env}", json=body, headers=headers)
        )
        return self.wait_for_deployment(model, env, timeout, project=project) if wait else deployment

    def undeploy(self, model: str, env: str, *, if_match: str | None = None, project: str | None = None) -> Deployment:
        """Retire the deployment (in the background; ``wait_for_deployment`` waits for ``retired``)."""
        headers = {"If-Match": if_match} if if_match else {}
        return Deployment.from_json(
            self.http.json("DELETE", f"{self._p(project)}/models/{model}/deployments/{env}", headers=headers)
        )

    def get_deployment(self, model: str, env: str, *, project: str | None = None) -> Deployment:
        return Deployment.from_json(self.http.json("GET", f"{self._p(project)}/models/{model}/deployments/{env}"))

    def list_deployments(
        self,
        *,
        model: str | None = None,
        environment: str | None = None,
        status: str | None = None,
        project: str | None = None,
    ) -> list[Deployment]:
        """Every deployment of the project matching the given filters (all pages), oldest first."""
        filters = {"model": model, "environment": environment, "status": status}
        params = {key: value for key, value in filters.items() if value is not None}
        return [Deployment.from_json(d) for d in self._pages(f"{self._p(project)}/deployments", params)]

    def wait_for_deployment(
        self,
        model: str,
        env: str,
        timeout: float = 300,
        *,
        poll: float = 0.5,
        raise_on_failure: bool = True,
        project: str | None = None,
    ) -> Deployment:
        """Poll until the deployment is ``healthy``, ``retired`` or ``failed`` (``DeploymentFailed``
        unless ``raise_on_failure=False``). ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.get_deployment(model, env, project=project)
            if current.status == "failed" and raise_on_failure:
                raise DeploymentFailed(current)
            if current.status in ("healthy", "failed", "retired"):
                return current
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{model} in {env} is still {current.status} after {timeout:g}s")
            time.sleep(poll)

    def predict(
        self, model: str, env: str, data: Any, version: str | int | None = None, *, project: str | None = None
    ) -> Prediction:
        """Predict through the gateway. ``data``: a DataFrame or a list of records (dicts).
        ``version`` pins one serving version instead of the traffic split."""
        if hasattr(data, "to_json") and hasattr(data, "columns"):
            import json

            split = json.loads(data.to_json(orient="split", index=False, date_format="iso"))
            body: dict[str, Any] = {"columns": split["columns"], "data": split["data"]}
        else:
            body = {"instances": list(data)}
        headers = {"X-MLPlatform-Version": str(version)} if version is not None else {}
        result = self.http.json(
            "POST", f"{self._p(project)}/models/{model}/deployments/{env}/predict", json=body, headers=headers
        )
        return Prediction(result["predictions"], result["version"], result["request_id"])

    # promotions

    def promote(
        self,
        model: str,
        version: str | int,
        *,
        to: str = "production",
        strategy: str | None = None,
        steps: list[int] | None = None,
        bake_seconds: float | None = None,
        wait: bool = False,
        timeout: float = 600,
        project: str | None = None,
    ) -> Promotion:
        """Request the promotion of ``version`` of ``model`` to ``to``.

        ``strategy``: ``direct``, ``canary`` (``steps`` percentages ending at 100, each baked
        ``bake_seconds``) or ``blue_green``; defaults come from the server's config. Failed
        policy checks raise ``ApiError`` 422 with every failed check in ``errors["checks"]``;
        another active promotion is 409. ``wait=True`` waits for a final state (approvals included).
        """
        body: dict[str, Any] = {"version": version, "to": to}
        body.update(
            {
                k: v
                for k, v in (("strategy", strategy), ("steps", steps), ("bake_seconds", bake_seconds))
                if v is not None
            }
        )
        promotion = Promotion.from_json(
            self.http.json("POST", f"{self._p(project)}/models/{model}/promotions", json=body)
        )
        return self.wait_for_promotion(promotion.id, timeout, project=project) if wait else promotion

    def get_promotion(self, promotion_id: int, *, project: str | None = None) -> Promotion:
        return Promotion.from_json(self.http.json("GET", f"{self._p(project)}/promotions/{promotion_id}"))

    def list_promotions(self, model: str, *, state: str | None = None, project: str | None = None) -> list[Promotion]:
        params = {"state": state} if state else {}
        return [Promotion.from_json(p) for p in self._pages(f"{self._p(project)}/models/{model}/promotions", params)]

    def approve(self, promotion_id: int, comment: str = "", *, project: str | None = None) -> Promotion:
        """Approve (a maintainer other than the requester); the last approval needed starts the rollout."""
        return Promotion.from_json(
            self.http.json("POST", f"{self._p(project)}/promotions/{promotion_id}/approve", json={"comment": comment})
        )

    def reject(self, promotion_id: int, reason: str, *, project: str | None = None) -> Promotion:
        return Promotion.from_json(
            self.http.json("POST", f"{self._p(project)}/promotions/{promotion_id}/reject", json={"reason": reason})
        )

    def rollback(self, promotion_id: int, reason: str = "", *, project: str | None = None) -> Promotion:
        """Return the environment to what served before the promotion, at once."""
        return Promotion.from_json(
            self.http.json("POST", f"{self._p(project)}/promotions/{promotion_id}/rollback", json={"reason": reason})
        )

    def wait_for_promotion(
        self, promotion_id: int, timeout: float = 600, *, poll: float = 1.0, project: str | None = None
    ) -> Promotion:
        """Poll until the promotion reaches a final state (completed, rolled_back, failed, rejected,
        expired) and return it; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.get_promotion(promotion_id, project=project)
            if current.state in PROMOTION_FINAL_STATES:
                return current
            if time.monotonic() >= deadline:
                raise TimeoutError(f"promotion {promotion_id} is still {current.state} after {timeout:g}s")
            time.sleep(poll)


class _ProgressReader:
    """A file body that reports bytes sent; ``__len__`` lets requests send Content-Length, not chunks."""

    def __init__(self, stream: IO[bytes], size: int, progress: Callable[[int], None]) -> None:
        self.stream = stream
        self.size = size
        self.progress = progress

    def __len__(self) -> int:
        return self.size

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.progress(len(chunk))
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk


# --- a run being logged -------------------------------------------------------------------


@dataclass
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


class ActiveRun:
    """A run that buffers metrics and sends them in batches from a background thread.

    ``batch_size`` points or ``flush_interval`` seconds, whichever comes first, make a batch.
    The queue holds at most ``queue_size`` points; ``log_metric`` waits when it is full.
    A batch that fails for good (a 4xx) is raised from the next ``flush()`` or at exit.
    """

    def __init__(
        self,
        client: Client,
        run: Run,
        project: str | None = None,
        *,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        queue_size: int = 100_000,
    ) -> None:
        self.client = client
        self.run = run
        self.id = run.id
        self.project = project
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._send_loop, name=f"mlplatform-run-{run.id[:8]}", daemon=True)
        self._thread.start()

    def log_metric(self, key: str, value: float, step: int = 0, timestamp: int | None = None) -> None:
        self._raise_failure()
        self._queue.put((key, float(value), int(step), timestamp if timestamp is not None else int(time.time() * 1000)))

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            self.log_metric(key, value, step, now)

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Sent at once, so a conflicting value (409) is raised here."""
        self.client.log_batch(self.id, params=params, project=self.project)

    def set_tag(self, key: str, value: str) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.client.log_batch(self.id, tags=tags, project=self.project)

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> Artifact:
        return self.client.upload_artifact(self.id, local_path, artifact_path, project=self.project)

    def flush(self) -> None:
        """Block until every metric logged so far has been sent."""
        marker = _Flush()
        self._queue.put(marker)
        marker.done.wait()
        self._raise_failure()

    def end(self, status: str = "finished") -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=60)
            self.client.update_run(self.id, status=status, project=self.project)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.end("failed" if exc_type is not None else "finished")

    def _raise_failure(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _send_loop(self) -> None:
        pending: list[tuple[str, float, int, int]] = []
        deadline = time.monotonic() + self.flush_interval
        while True:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout) if pending else self._queue.get()
            except queue.Empty:
                item = _Flush()  # time's up: send what we have
            if isinstance(item, tuple):
                if not pending:
                    deadline = time.monotonic() + self.flush_interval
                pending.append(item)
                if len(pending) < self.batch_size:
                    continue
            self._send(pending)
            pending = []
            if isinstance(item, _Flush):
                item.done.set()
            elif item is None:
                return

    def _send(self, points: list[tuple[str, float, int, int]]) -> None:
        if not points:
            return
        try:
            self.client.log_batch(self.id, metrics=points, idempotency_key=uuid.uuid4().hex, project=self.project)
        except BaseException as exc:  # noqa: BLE001 - surfaced on the caller's thread
            self._error = exc


# --- model registry results ---------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    tags: dict[str, str]
    aliases: dict[str, int]
    latest_version: int | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> RegisteredModel:
        return cls(
            body["name"],
            body.get("description", ""),
            dict(body.get("tags", {})),
            dict(body.get("aliases", {})),
            body.get("latest_version"),
        )


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    status: str
    status_message: str
    flavor: str | None
    signature: dict[str, Any] | None
    artifact_uri: str
    artifact_sha256: str | None
    aliases: list[str]
    tags: dict[str, str]
    description: str
    archived: bool
    run_id: str | None
    created_by: str
    created_at: dt.datetime | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ModelVersion:
        return cls(
            body["model"],
            body["version"],
            body["status"],
            body.get("status_message", ""),
            body.get("flavor"),
            body.get("signature"),
            body.get("artifact_uri", ""),
            body.get("artifact_sha256"),
            list(body.get("aliases", [])),
            dict(body.get("tags", {})),
            body.get("description", ""),
            bool(body.get("archived")),
            body.get("run_id"),
            body.get("created_by", ""),
            _time(body.get("created_at")),
        )


class ModelVersionFailed(Exception):
    """``wait_for_version`` saw the version fail validation; ``version.status_message`` says why."""

    def __init__(self, version: ModelVersion) -> None:
        super().__init__(f"{version.model} v{version.version} failed: {version.status_message}")
        self.version = version


def _records(example: Any) -> list[dict[str, Any]] | None:
    """An input example as JSON records: a DataFrame through its own JSON writer (numpy types, dates)."""
    if example is None or isinstance(example, list):
        return example
    if hasattr(example, "to_json"):
        import json

        return json.loads(example.to_json(orient="records", date_format="iso"))
    raise TypeError("input_example must be a pandas DataFrame or a list of records (dicts)")


# --- deployments --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficShare:
    version: int
    weight: int
    status: str
    status_message: str


@dataclass(frozen=True)
class Deployment:
    """A model's deployment in one environment; ``etag`` is what ``if_match`` takes."""

    model: str
    environment: str
    target: str
    status: str
    status_message: str
    revision: int
    traffic: list[TrafficShare]
    updated_at: dt.datetime | None

    @property
    def etag(self) -> str:
        return f'"{self.revision}"'

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Deployment:
        traffic = [
            TrafficShare(t["version"], t["weight"], t["status"], t.get("status_message", "")) for t in body["traffic"]
        ]
        return cls(
            body["model"],
            body["environment"],
            body["target"],
            body["status"],
            body.get("status_message", ""),
            body["revision"],
            traffic,
            _time(body.get("updated_at")),
        )


class DeploymentFailed(Exception):
    """``wait_for_deployment`` saw the deployment fail; ``deployment.status_message`` says why."""

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(f"{deployment.model} in {deployment.environment} failed: {deployment.status_message}")
        self.deployment = deployment


@dataclass(frozen=True)
class Prediction:
    """The gateway's answer: one prediction per input row, the version that made them."""

    predictions: list[Any]
    version: int
    request_id: str


# --- promotions ---------------------------------------------------------------------------

PROMOTION_FINAL_STATES = ("completed", "rejected", "rolled_back", "failed", "expired")


@dataclass(frozen=True)
class Promotion:
    """A promotion as the server shows it; ``rollout`` holds each step's timings and measurements."""

    id: int
    model: str
    version: int
    environment: str
    strategy: str
    state: str
    reason: str
    steps: list[int]
    requested_by: str
    approvals: list[dict[str, Any]]
    checks: dict[str, Any]
    rollout: list[dict[str, Any]]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Promotion:
        return cls(
            body["id"],
            body["model"],
            body["version"],
            body["environment"],
            body["strategy"],
            body["state"],
            body.get("reason", ""),
            list(body.get("steps", [])),
            body.get("requested_by", ""),
            list(body.get("approvals", [])),
            dict(body.get("checks", {})),
            list(body.get("rollout", [])),
        )
