"""The ``kubernetes`` target's client calls, against an in-process API emulator.

No Kubernetes API server can run on this machine (no container runtime, no kind/k3s), so
these tests use ``tests/kubernetes/emulator.py``: an ``http.server`` in a thread on
127.0.0.1 that emulates the apply/get/delete endpoints of Deployments, Services and
HorizontalPodAutoscalers and records every request. The target under test is the real one,
using the real ``kubernetes`` client through a kubeconfig that points at the emulator; what
the emulator does not do (controllers, field ownership merges) is set by hand per test.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlplatform.core.backends import DeploymentSpec
from mlplatform.core.errors import BackendError, InvalidInput, NotFound
from plugins_contrib.kubernetes.manifests import render
from tests.conftest import free_port
from tests.kubernetes.conftest import TOKEN, write_kubeconfig
from tests.kubernetes.emulator import KubernetesApiEmulator

SPEC = DeploymentSpec("churn", "iris", 3, "sklearn", "models/iris/3", "ab" * 32)
NAME = "mlp-churn-iris-v3"
REF = f"models/{NAME}"
PATHS = [
    f"/apis/apps/v1/namespaces/models/deployments/{NAME}",
    f"/api/v1/namespaces/models/services/{NAME}",
    f"/apis/autoscaling/v2/namespaces/models/horizontalpodautoscalers/{NAME}",
]

MakeTarget = Callable[..., Any]


# --- deploy ----------------------------------------------------------------------------------------


def test_deploy_server_side_applies_three_objects(emulator: KubernetesApiEmulator, make_target: MakeTarget) -> None:
    """Against the emulator (no real API server can run here): three apply PATCHes, in order."""
    target = make_target()
    assert target.deploy(SPEC) == REF
    patches = [r for r in emulator.requests if r.method == "PATCH"]
    assert [r.path for r in patches] == PATHS
    expected = render(SPEC, target.settings).all()
    for request, manifest in zip(patches, expected, strict=True):
        assert request.headers["content-type"] == "application/apply-patch+yaml"
        assert request.query == {"fieldManager": ["mlplatform"], "force": ["true"]}
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.body == manifest
    assert emulator.get("deployments", "models", NAME)["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example/mlplatform:1.0"
    )


def test_deploy_uses_the_configured_field_manager(emulator: KubernetesApiEmulator, make_target: MakeTarget) -> None:
    """Against the emulator (no real API server can run here)."""
    make_target(field_manager="mlplatform-prod").deploy(SPEC)
    assert {r.query["fieldManager"][0] for r in emulator.requests} == {"mlplatform-prod"}


def test_redeploying_the_same_spec_changes_nothing(emulator: KubernetesApiEmulator, make_target: MakeTarget) -> None:
    """Against the emulator (no real API server can run here): apply is idempotent."""
    target = make_target()
    target.deploy(SPEC)
    before = emulator.get("deployments", "models", NAME)
    assert target.deploy(SPEC) == REF
    after = emulator.get("deployments", "models", NAME)
    assert after["metadata"]["generation"] == before["metadata"]["generation"] == 1
    assert after["spec"] == before["spec"]


def test_deploy_into_a_missing_namespace_is_a_backend_error(make_target: MakeTarget) -> None:
    """Against the emulator (no real API server can run here), which knows ``default`` and ``models``."""
    with pytest.raises(BackendError, match='namespaces "nowhere" not found') as info:
        make_target(namespace="nowhere").deploy(SPEC)
    assert "apply Deployment nowhere/" in info.value.message


def test_a_refused_apply_names_the_object_and_the_apis_reason(
    emulator: KubernetesApiEmulator, make_target: MakeTarget
) -> None:
    """Against the emulator (no real API server can run here); the bearer token never leaks."""
    emulator.fail(
        "PATCH", "services", 403, "Forbidden", 'services is forbidden: User "ci" cannot patch resource "services"'
    )
    with pytest.raises(BackendError) as info:
        make_target().deploy(SPEC)
    message = info.value.message
    assert message.startswith(
        f"Kubernetes refused to apply Service models/{NAME}: 403 Forbidden: services is forbidden"
    )
    assert TOKEN not in message and TOKEN not in repr(info.value.__cause__) and info.value.__suppress_context__
    assert info.value.status == 502


def test_an_unreachable_api_is_a_backend_error(tmp_path: Path) -> None:
    """Nothing listens on the port (no API server can run here, and no emulator is started)."""
    from plugins_contrib.kubernetes.target import KubernetesTarget

    host = f"http://127.0.0.1:{free_port()}"
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", host)
    target = KubernetesTarget(
        {"namespace": "models", "image": "i:1", "kubeconfig": str(kubeconfig), "request_timeout_s": 2}
    )
    try:
        with pytest.raises(BackendError, match=f"cannot reach the Kubernetes API at {host}"):
            target.status(REF)
    finally:
        target.close()


# --- status ---------------------------------------------------------------------------------------


def _deployed(emulator: KubernetesApiEmulator, make_target: MakeTarget, **options: Any) -> Any:
    target = make_target(**options)
    target.deploy(SPEC)
    return target


def _conditions(*items: tuple[str, str, str, str]) -> list[dict[str, str]]:
    return [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in items]


AVAILABLE = ("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
PROGRESSED = ("Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{NAME}-5d4" has successfully progressed.')


def test_status_of_an_unknown_reference_is_absent(make_target: MakeTarget) -> None:
    """Against the emulator (no real API server can run here): 404 -> absent."""
    target = make_target()
    assert target.status(REF).state == "absent"
    assert target.status("not-a-reference").state == "absent"


def test_status_without_a_controller_report_is_deploying(
    emulator: KubernetesApiEmulator, make_target: MakeTarget
) -> None:
    """Against the emulator (no real API server can run here): a fresh Deployment has no status yet."""
    assert _deployed(emulator, make_target).status(REF).state == "deploying"


def test_status_healthy_when_available_and_all_replicas_ready(
    emulator: KubernetesApiEmulator, make_target: MakeTarget
) -> None:
    """Against the emulator (no real API server can run here); the controller's status is set by hand."""
    target = _deployed(emulator, make_target, replicas=2)
    emulator.set_status(
        "models",
        NAME,
        {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
            "conditions": _conditions(AVAILABLE, PROGRESSED),
        },
    )
    status = target.status(REF)
    assert (status.state, status.message) == ("healthy", "2/2 replicas ready")
    assert status.details["replicas"]["desired"] == 2


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (  # Available (minimum availability) but one replica still starting
            {
                "observedGeneration": 1,
                "replicas": 2,
                "updatedReplicas": 2,
                "readyReplicas": 1,
                "availableReplicas": 1,
                "conditions": _conditions(AVAILABLE, ("Progressing", "True", "ReplicaSetUpdated", "progressing")),
            },
            "1/2 replicas ready, 2 updated",
        ),
        (  # a rolling update: old replicas are still there
            {
                "observedGeneration": 1,
                "replicas": 3,
                "updatedReplicas": 1,
                "readyReplicas": 3,
                "availableReplicas": 3,
                "conditions": _conditions(AVAILABLE, ("Progressing", "True", "ReplicaSetUpdated", "progressing")),
            },
            "3/2 replicas ready, 1 updated",
        ),
        (  # not available at all yet
            {
                "observedGeneration": 1,
                "replicas": 2,
                "updatedReplicas": 2,
                "readyReplicas": 0,
                "conditions": _conditions(("Available", "False", "MinimumReplicasUnavailable", "no"), PROGRESSED),
            },
            "0/2 replicas ready, 2 updated",
        ),
        (  # the controller has not seen the newest spec
            {
                "observedGeneration": 0,
                "replicas": 2,
                "updatedReplicas": 2,
                "readyReplicas": 2,
                "conditions": _conditions(AVAILABLE, PROGRESSED),
            },
            "waiting for the Deployment controller to see the new spec",
        ),
    ],
)
def test_status_deploying_while_progressing(
    emulator: KubernetesApiEmulator, make_target: MakeTarget, status: dict[str, Any], message: str
) -> None:
    """Against the emulator (no real API server can run here); the controller's status is set by hand."""
    target = _deployed(emulator, make_target, replicas=2)
    emulator.set_status("models", NAME, status)
    assert (target.status(REF).state, target.status(REF).message) == ("deploying", message)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (
            ("Progressing", "False", "ProgressDeadlineExceeded", f'ReplicaSet "{NAME}-5d4" has timed out progressing.'),
            f'ReplicaSet "{NAME}-5d4" has timed out progressing.',
        ),
        (
            ("ReplicaFailure", "True", "FailedCreate", 'pods "x" is forbidden: exceeded quota: compute'),
            'pods "x" is forbidden: exceeded quota: compute',
        ),
    ],
)
def test_status_failed_on_deadline_or_replica_failure(
    emulator: KubernetesApiEmulator, make_target: MakeTarget, condition: tuple[str, str, str, str], message: str
) -> None:
    """Against the emulator (no real API server can run here); the controller's status is set by hand."""
    target = _deployed(emulator, make_target)
    emulator.set_status(
        "models",
        NAME,
        {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "conditions": _conditions(("Available", "False", "MinimumReplicasUnavailable", "no"), condition),
        },
    )
    status = target.status(REF)
    assert (status.state, status.message) == ("failed", message)
    assert condition[2] in {c["reason"] for c in status.details["conditions"]}


def test_status_read_errors_are_backend_errors(emulator: KubernetesApiEmulator, make_target: MakeTarget) -> None:
    """Against the emulator (no real API server can run here): a 500 is not ``absent``."""
    emulator.fail("GET", "deployments", 500, "InternalError", "etcdserver: request timed out")
    with pytest.raises(BackendError, match=f"read Deployment models/{NAME}: 500 Internal Server Error: etcdserver"):
        make_target().status(REF)


# --- undeploy -------------------------------------------------------------------------------------


def test_undeploy_deletes_all_three_and_is_idempotent(emulator: KubernetesApiEmulator, make_target: MakeTarget) -> None:
    """Against the emulator (no real API server can run here): the second time every DELETE is a 404."""
    target = _deployed(emulator, make_target)
    emulator.requests.clear()
    target.undeploy(REF)
    assert not emulator.objects
    target.undeploy(REF)
    deletes = [r for r in emulator.requests if r.method == "DELETE"]
    assert [r.path for r in deletes] == [PATHS[2], PATHS[1], PATHS[0]] * 2
    assert all(r.query == {"propagationPolicy": ["Background"]} for r in deletes)
    assert target.status(REF).state == "absent"


def test_undeploy_finishes_a_partial_deployment(emulator: KubernetesApiEmulator, make_target: MakeTarget) -> None:
    """Against the emulator (no real API server can run here): the Service apply failed, the Deployment remains."""
    emulator.fail("PATCH", "services", 422, "Invalid", "Service is invalid")
    target = make_target()
    with pytest.raises(BackendError):
        target.deploy(SPEC)
    assert list(emulator.objects) == [("deployments", "models", NAME)]
    target.undeploy(REF)
    assert not emulator.objects


def test_undeploy_of_a_malformed_reference_does_nothing(
    emulator: KubernetesApiEmulator, make_target: MakeTarget
) -> None:
    """Against the emulator (no real API server can run here)."""
    make_target().undeploy("garbage")
    assert emulator.requests == []


def test_a_refused_delete_is_a_backend_error(emulator: KubernetesApiEmulator, make_target: MakeTarget) -> None:
    """Against the emulator (no real API server can run here)."""
    target = _deployed(emulator, make_target)
    emulator.fail("DELETE", "deployments", 403, "Forbidden", "deployments.apps is forbidden")
    with pytest.raises(BackendError, match="delete Deployment .*403 Forbidden: deployments.apps is forbidden"):
        target.undeploy(REF)


# --- predict ----------------------------------------------------------------------------------------


class _ModelServer(BaseHTTPRequestHandler):
    """A stand-in model server: doubles ``x``; a batch with a missing ``x`` is a 400."""

    received: list[Any] = []

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, body))
        records = body["records"]
        if any("x" not in r for r in records):
            code, answer = 400, {"message": "column x is missing"}
        else:
            code, answer = 200, {"predictions": [r["x"] * 2 for r in records]}
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def model_server() -> Iterator[tuple[int, list[Any]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ModelServer)
    _ModelServer.received = []
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1], _ModelServer.received
    server.shutdown()
    server.server_close()


def test_predict_posts_records_to_the_service_url(make_target: MakeTarget, model_server: tuple[int, list[Any]]) -> None:
    """No cluster DNS here: ``service_url_template`` points at a local stand-in model server."""
    port, received = model_server
    target = make_target(service_url_template=f"http://127.0.0.1:{port}/{{namespace}}/{{name}}")
    assert target.predict(REF, pd.DataFrame({"x": [1, 2.5]})) == [2, 5.0]
    assert received == [(f"/models/{NAME}/predict", {"records": [{"x": 1.0}, {"x": 2.5}]})]
    with pytest.raises(InvalidInput, match="column x is missing"):
        target.predict(REF, pd.DataFrame({"y": [1]}))
    with pytest.raises(NotFound):
        target.predict("garbage", pd.DataFrame({"x": [1]}))


def test_predict_default_url_is_in_cluster(make_target: MakeTarget) -> None:
    assert make_target().service_url("models", NAME) == f"http://{NAME}.models.svc:8080"


def test_predict_to_an_unreachable_server_says_how_to_fix_it(make_target: MakeTarget) -> None:
    """Nothing listens on the port: the error names service_url_template."""
    target = make_target(service_url_template=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(BackendError, match="service_url_template"):
        target.predict(REF, pd.DataFrame({"x": [1]}))


# --- construction and registration ---------------------------------------------------------------


def test_a_missing_kubeconfig_is_a_backend_error(tmp_path: Path) -> None:
    from plugins_contrib.kubernetes.target import KubernetesTarget

    with pytest.raises(BackendError, match="cannot load the Kubernetes connection from the kubeconfig"):
        KubernetesTarget({"namespace": "models", "image": "i:1", "kubeconfig": str(tmp_path / "missing")})


def test_without_the_client_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from plugins_contrib.kubernetes.target import KubernetesTarget

    monkeypatch.setitem(sys.modules, "kubernetes.client", None)
    with pytest.raises(ImportError, match=r"pip install 'mlplatform\[kubernetes\]'"):
        KubernetesTarget({"namespace": "models", "image": "i:1"})


def test_the_plugin_registers_the_target() -> None:
    """Works before and after the ``kubernetes`` entry point is in setup.cfg (pluggy refuses
    to register one module twice, so the module is only added when the entry point is absent)."""
    from mlplatform.core.plugins import build_plugin_manager
    from plugins_contrib.kubernetes import plugin
    from plugins_contrib.kubernetes.target import KubernetesTarget

    pm = build_plugin_manager()
    if "kubernetes" not in pm.backends.names("deployment_target"):
        pm = build_plugin_manager(extra_plugins=[plugin])
    assert pm.backends.get("deployment_target", "kubernetes", "deployment_targets[0].backend") is KubernetesTarget
    assert KubernetesTarget.install_hint == "pip install 'mlplatform[kubernetes]'"
