"""No value a client can send makes a route answer 500.

Every operation in the OpenAPI spec is called, as admin, on paths that exist (a project with an
experiment, a run, a model version deployed to staging, an alias, a user), with bodies built from
the operation's own request schema: first one that passes the schema, then that body with one
field at a time replaced by a value that passes a loose schema but can break a handler or the
database: NUL bytes (PostgreSQL rejects them in text), integers past 64 bits, non-finite and huge
floats, lone surrogates, empty and long strings, deep nesting. Query parameters get the same
treatment. Each answer must be below 500 and, if an error, in the one error shape; a refused
write must leave the audit log (which every change writes in its transaction) as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mlplatform.core.db.models import AuditEvent
from tests.api_client import Api
from tests.deployments.conftest import MODEL, PROJECT, add_version, dapi, deploy  # noqa: F401 - dapi is a fixture

WRITE_METHODS = ("post", "put", "patch", "delete")
#: Values that a schema field of any type may be handed.
NASTY: list[Any] = [
    "nul\x00byte",
    "\ud800",
    "",
    "x" * 3000,
    2**64,
    2**40,
    -(2**63) - 1,
    1e308,
    -0.0,
    None,
    [],
    {},
    {"a": {"b": {"c": {"d": [1, [2, [3]]]}}}},
    "../../etc/passwd",
]
#: Query values as they appear in a URL (percent-encoded).
QUERY_VALUES = ["nul%00byte", "%ED%A0%80", "", "-1", "0", str(2**64), str(2**40), "1e308", "nan", "x" * 3000]
#: Raw bodies that are not a JSON object.
RAW_BODIES = [b"{not json", b"[]", b'"text"', b"123", b"null", b'{"a": NaN}', b"\xff\xfe"]
ERROR_SHAPE = {"code", "status", "message", "errors"}


@pytest.fixture
def api(dapi: Any) -> Api:  # noqa: F811 - the deployments' API: project acme, staging and production
    return dapi()


@pytest.fixture
def world(api: Api, tmp_path: Path) -> dict[str, str]:
    """Real ids for every path parameter of the spec."""
    add_version(api.platform, tmp_path, 1)
    deploy(api, 1)
    base = f"/api/v1/projects/{PROJECT}"
    experiment = api.post(f"{base}/experiments", json={"name": "e"}).json["id"]
    run = api.post(f"{base}/experiments/{experiment}/runs", json={"name": "r"}).json["id"]
    assert api.post(f"{base}/runs/{run}/log", json={"metrics": [{"key": "loss", "value": 1.0}]}).status_code < 300
    assert api.put(f"{base}/models/{MODEL}/aliases/champion", json={"version": 1}).status_code == 200
    api.user("u1", role="viewer", project=PROJECT)
    token_id = api.post("/api/v1/tokens", json={"name": "spare"}).json["id"]
    return {
        "project": PROJECT,
        "model": MODEL,
        "version": "1",
        "environment": "staging",
        "alias": "champion",
        "experiment_id": str(experiment),
        "run_id": run,
        "key": "loss",
        "path": "model/file.txt",
        "username": "u1",
        "token_id": str(token_id),
        "promotion_id": "1",
        "rule_id": "1",
        "alert_id": "1",
    }


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def sample(spec: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> Any:
    """A value that satisfies ``schema`` as far as its types, enums and required fields go."""
    schema = resolve(spec, schema)
    if "enum" in schema:
        return schema["enum"][0]
    for combined in ("oneOf", "anyOf", "allOf"):
        if schema.get(combined):
            return sample(spec, schema[combined][0], depth)
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        if depth > 3:
            return {}
        properties = schema.get("properties", {})
        return {name: sample(spec, properties[name], depth + 1) for name in properties}
    if kind == "array":
        return [sample(spec, schema.get("items", {}), depth + 1)] if depth <= 3 else []
    return {"integer": 1, "number": 1.5, "boolean": True}.get(kind or "", "x")


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field of a sampled body, nested ones too (the first item of a list)."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in children:
        yield (*path, key)
        yield from leaf_paths(item, (*path, key))


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in (*WRITE_METHODS, "get"):
                yield path, method, operation


def concrete(path: str, world: dict[str, str]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: world[m.group(1)], path)


def audit_events(api: Api) -> int:
    """Every change is audited in its own transaction, so a refused call must leave this count alone."""
    with api.platform.db.read() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent))


def check(response: Any, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.get_data(as_text=True)[:500])
    if response.status_code >= 400 and response.is_json:
        assert set(response.json) == ERROR_SHAPE, (what, response.json)


def test_no_body_or_field_value_gives_a_500(api: Api, world: dict[str, str]) -> None:
    spec = api.get("/api/v1/openapi.json").json
    called = 0
    for path, method, operation in operations(spec):
        url = concrete(path, world)
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        body = sample(spec, content["application/json"]["schema"])
        check(api.call(method.upper(), url, json=body), f"{method} {path} {body}")
        for raw in RAW_BODIES:
            response = api.call(method.upper(), url, data=raw, headers={"Content-Type": "application/json"})
            check(response, f"{method} {path} raw {raw!r}")
        for field in leaf_paths(body):
            for value in NASTY:
                assert api.platform.jobs.wait_idle(30)  # a job an earlier call queued audits on its own
                before = audit_events(api)
                changed = json.dumps(replaced(body, field, value))
                response = api.call(method.upper(), url, data=changed, headers={"Content-Type": "application/json"})
                what = f"{method} {path} {field}={value!r:.40}"
                check(response, what)
                if response.status_code >= 400:
                    assert audit_events(api) == before, f"{what} was refused but changed something"
                called += 1
    assert called > 1000


def test_no_query_value_gives_a_500(api: Api, world: dict[str, str]) -> None:
    spec = api.get("/api/v1/openapi.json").json
    called = 0
    for path, method, operation in operations(spec):
        if method != "get":
            continue
        url = concrete(path, world)
        for parameter in operation.get("parameters", []):
            if parameter.get("in") != "query":
                continue
            for value in QUERY_VALUES:
                response = api.get(f"{url}?{parameter['name']}={value}")
                check(response, f"GET {path}?{parameter['name']}={value!r:.40}")
                called += 1
    assert called > 50


def test_no_path_value_gives_a_500(api: Api, world: dict[str, str]) -> None:
    spec = api.get("/api/v1/openapi.json").json
    for path, method, _operation in operations(spec):
        if method != "get":
            continue
        for name in re.findall(r"\{([^}]+)\}", path):
            for value in ["nul%00byte", str(2**64), str(2**40), "-1", "%ED%A0%80", "x" * 300]:
                url = concrete(path, {**world, name: value})
                check(api.get(url), f"GET {path} {name}={value:.40}")


def test_an_unstorable_value_is_a_422_naming_the_field_and_writes_nothing(api: Api, world: dict[str, str]) -> None:
    base = f"/api/v1/projects/{PROJECT}"
    response = api.patch(base, json={"description": "a\x00b"})
    assert response.status_code == 422
    assert response.json["errors"] == {"json": {"description": ["contains a NUL character"]}}
    assert response.json["message"] == "description contains a NUL character"
    assert api.get(base).json["description"] != "a\x00b"

    batch = {"params": [{"key": "lr", "value": "0.1"}, {"key": "depth", "value": "\ud800"}]}
    response = api.post(f"{base}/runs/{world['run_id']}/log", data=json.dumps(batch), content_type="application/json")
    assert response.status_code == 422
    assert response.json["errors"] == {
        "json": {"params": {"1": {"value": ["contains a lone surrogate (not Unicode text)"]}}}
    }
    assert api.get(f"{base}/runs/{world['run_id']}").json["params"] == {}  # not even the good one

    response = api.put(f"{base}/models/{MODEL}/aliases/champion", json={"version": 2**64})
    assert response.status_code == 422 and "64-bit" in response.json["message"]
    response = api.put(f"{base}/models/{MODEL}/aliases/champion", json={"version": 2**40})
    assert response.status_code == 404 and response.json["errors"] == {"version": ["not found"]}


def test_a_path_the_databases_cannot_hold_is_a_404(api: Api, world: dict[str, str]) -> None:
    base = f"/api/v1/projects/{PROJECT}"
    assert api.get(f"{base}/experiments/{2**63}").status_code == 404
    assert api.get(f"{base}/experiments/{2**63 - 1}").json["message"].startswith("experiment")
    assert api.get("/api/v1/users/u%00").status_code == 404
    assert api.get(f"{base}/models/{MODEL}/versions/{2**31}").status_code == 404
    assert api.get(f"{base}/models/{MODEL}/versions/{2**31 - 1}").json["errors"] == {"version": ["not found"]}
