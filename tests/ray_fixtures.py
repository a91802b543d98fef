"""Ray for the tests that need it: one local cluster per pytest session, shared by every folder.

Ray can be initialised once per process, so tests/serving and tests/promotions use this one
session fixture (loaded through ``pytest_plugins`` in tests/conftest.py). It starts Ray in
this process (2 CPUs, no dashboard) and Serve without an HTTP proxy, and at session end
shuts down exactly those: ``serve.shutdown()``, ``ray.shutdown()``; never ``ray stop``.

A test module that uses Ray sets ``pytestmark = RAY_MARKS``: the ``ray`` marker (deselect
with ``-m "not ray"``) and the warning filter Ray's import needs under ``filterwarnings = error``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import service_missing

RAY_MARKS = [
    pytest.mark.ray,
    # ray.serve's pydantic models (ray 2.60, pydantic 2.14), raised once when ray.serve is imported.
    pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field` is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        service_missing(f"Ray Serve is not installed ({exc}): pip install 'mlplatform[ray]'")
    if ray.is_initialized():
        pytest.fail("Ray is already initialised in this process; the ray tests start their own")
    previous = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="mlplatform-tests")
    try:
        serve.start(proxy_location="Disabled")
        yield
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            if previous is None:
                os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
            else:
                os.environ["RAY_USAGE_STATS_ENABLED"] = previous


@pytest.fixture
def serve_apps(ray_cluster: None) -> Iterator[set[str]]:
    """The Serve applications that existed before the test; after it, deletes every application
    the test left behind (and only those), so replicas never pile up on the session's 2 CPUs
    and the next test's ``<project>-<model>-v<n>`` names start fresh."""
    from ray import serve

    before = set(serve.status().applications)
    yield before
    for name in sorted(set(serve.status().applications) - before):
        serve.delete(name, _blocking=True)
