"""The prediction gateway: validation, limits, traffic split, pinning, rate limits (memory, Redis)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from mlplatform.core.gateway import MemoryTokenBucket, RedisTokenBucket
from tests.api_client import Api
from tests.conftest import service_missing
from tests.deployments.conftest import BASE, ROWS, add_version, deploy, predict

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_validation_and_body_limit(dapi: Callable[..., Api], tmp_path: Path) -> None:
    api = dapi({"gateway": {"max_body_bytes": 2048}})
    add_version(api.platform, tmp_path, 1)
    deploy(api, 1)

    response = predict(api, {"instances": [{"x1": 0.5, "x2": "high"}]})
    assert response.status_code == 422 and "'x2'" in response.json["message"], response.json
    assert "x2" in response.json["errors"]
    response = predict(api, {"instances": [{"x1": 0.5}]})
    assert response.status_code == 422 and "x2" in response.json["errors"]
    response = predict(api, {"instances": [{"x1": 0.5, "x2": 1.0, "x9": 1}]})
    assert response.status_code == 422 and "x9" in response.json["message"]
    response = predict(api, {"columns": ["x1", "x2"], "data": [[1.0]]})
    assert response.status_code == 422
    response = predict(api, {"rows": []})
    assert response.status_code == 422

    big = {"instances": [{"x1": 0.5, "x2": 1.0}] * 200}
    response = predict(api, big)
    assert response.status_code == 413 and "2048" in response.json["message"]
    response = api.post(f"{BASE}/staging/predict", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400

    response = predict(api, {"instances": ROWS}, headers={"X-MLPlatform-Version": "banana"})
    assert response.status_code == 400


def test_rate_limit_answers_429_with_retry_after(dapi: Callable[..., Api], tmp_path: Path) -> None:
    api = dapi({"gateway": {"rate_limit": {"requests_per_second": 0.2, "burst": 2}}})
    add_version(api.platform, tmp_path, 1)
    deploy(api, 1)
    statuses = [predict(api, {"instances": ROWS}).status_code for _ in range(2)]
    response = predict(api, {"instances": ROWS})
    assert statuses == [200, 200]
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    # buckets are per token: another caller still gets through
    api.user("otto", role="viewer", project="acme")
    assert predict(api, {"instances": ROWS}, token="otto").status_code == 200


def test_traffic_split_and_pinning(dapi: Callable[..., Api], tmp_path: Path) -> None:
    api = dapi({"gateway": {"rate_limit": {"requests_per_second": 100000, "burst": 100000}}})
    add_version(api.platform, tmp_path, 1)
    add_version(api.platform, tmp_path, 2)
    add_version(api.platform, tmp_path, 3)
    deploy(api, 1)
    body = deploy(api, 2, weight=20)
    assert {t["version"]: t["weight"] for t in body["traffic"]} == {1: 80, 2: 20}

    counts = Counter(predict(api, {"instances": ROWS[:1]}).json["version"] for _ in range(1000))
    assert counts[1] + counts[2] == 1000
    assert 0.15 <= counts[2] / 1000 <= 0.25, counts

    for header in ("1", "v2"):
        versions = {
            predict(api, {"instances": ROWS}, headers={"X-MLPlatform-Version": header}).json["version"]
            for _ in range(20)
        }
        assert versions == {int(header.lstrip("v"))}
    response = predict(api, {"instances": ROWS}, headers={"X-MLPlatform-Version": "3"})
    assert response.status_code == 404 and "not deployed" in response.json["message"]

    body = deploy(api, 3)  # weight 100 replaces both
    assert {t["version"]: t["weight"] for t in body["traffic"]} == {3: 100}
    assert {predict(api, {"instances": ROWS}).json["version"] for _ in range(10)} == {3}


def test_memory_token_bucket_refills() -> None:
    bucket = MemoryTokenBucket(rate=50.0, burst=2)
    assert [bucket.acquire("a"), bucket.acquire("a")] == [0.0, 0.0]
    wait = bucket.acquire("a")
    assert 0 < wait <= 0.02
    time.sleep(wait + 0.01)
    assert bucket.acquire("a") == 0.0
    assert bucket.acquire("b") == 0.0


@pytest.fixture
def redis_bucket() -> RedisTokenBucket:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis is not reachable at {REDIS_URL}: {exc}")
    bucket = RedisTokenBucket(REDIS_URL, rate=20.0, burst=3)
    yield bucket
    bucket.client.delete(*bucket.client.keys(f"{RedisTokenBucket.PREFIX}test-*") or ["none"])
    bucket.close()


def test_redis_token_bucket_against_real_redis(redis_bucket: RedisTokenBucket) -> None:
    key = f"test-{uuid.uuid4().hex}"
    assert [redis_bucket.acquire(key) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = redis_bucket.acquire(key)
    assert 0 < wait <= 0.05 + 1e-6
    assert redis_bucket.client.pttl(RedisTokenBucket.PREFIX + key) > 0  # buckets expire
    time.sleep(wait + 0.02)
    assert redis_bucket.acquire(key) == 0.0

    # Atomic under concurrency: 3 tokens, 40 simultaneous takers, at most 3 (+ refill) win.
    from concurrent.futures import ThreadPoolExecutor

    other = f"test-{uuid.uuid4().hex}"
    slow = RedisTokenBucket(REDIS_URL, rate=0.01, burst=3)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: slow.acquire(other), range(40)))
        assert sum(1 for r in results if r == 0.0) == 3
    finally:
        slow.client.delete(RedisTokenBucket.PREFIX + other)
        slow.close()


def test_redis_rate_limit_through_the_api(
    dapi: Callable[..., Api], tmp_path: Path, redis_bucket: RedisTokenBucket
) -> None:
    api = dapi(
        {"gateway": {"rate_limit": {"backend": "redis", "url": REDIS_URL, "requests_per_second": 0.2, "burst": 1}}}
    )
    add_version(api.platform, tmp_path, 1)
    deploy(api, 1)
    gateway = api.app.extensions["mlplatform_gateway"]
    gateway.limiter.PREFIX = f"{RedisTokenBucket.PREFIX}test-{uuid.uuid4().hex}:"  # isolate from other runs
    assert predict(api, {"instances": ROWS}).status_code == 200
    response = predict(api, {"instances": ROWS})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1


NAN_MODEL = """
class Model:
    def predict(self, frame):
        return [float("nan") if i % 2 == 0 else 1.5 for i in range(len(frame))]
"""


def test_a_nan_prediction_is_served_as_null_in_strict_json(api: Api, tmp_path: Path) -> None:
    import json

    from mlplatform.core.model_loading import DESCRIPTOR
    from tests.deployments.conftest import SIGNATURE, store_version

    folder = tmp_path / "nan-model"
    folder.mkdir()
    (folder / "model.py").write_text(NAN_MODEL)
    (folder / DESCRIPTOR).write_text(json.dumps({"flavor": "python_function", "module": "model.py", "class": "Model"}))
    signature = {**SIGNATURE, "outputs": [{"type": "double"}]}
    store_version(api.platform, folder, 1, flavor="python_function", signature=signature)
    deployed = deploy(api, 1)
    assert deployed["status"] == "healthy", deployed["status_message"]
    response = predict(api, {"instances": ROWS})
    assert response.status_code == 200, response.json

    def refuse(literal: str) -> None:
        raise AssertionError(f"non-JSON literal {literal} in {response.data!r}")

    assert json.loads(response.data, parse_constant=refuse)["predictions"] == [None, 1.5]


def test_the_wire_encoder_turns_numpy_dates_and_non_finite_floats_into_json() -> None:
    import datetime as dt

    import numpy as np

    from mlplatform.core import wire_json

    body = {
        "array": np.array([1.0, np.nan, np.inf]),
        "scalar": np.int64(3),
        "at": dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC),
        7: "int key",
    }
    assert wire_json.dumps(body) == (
        b'{"array":[1.0,null,null],"scalar":3,"at":"2026-12-07T12:00:00+00:00","7":"int key"}'
    )
