"""Hooks that no built-in implements yet, exercised through in-test plugins."""

from __future__ import annotations

import types

import pytest
from marshmallow import Schema, fields

from api.app import create_app
from mlplatform import hookimpl
from mlplatform.core.backends import (
    AuthBackend,
    DeploymentTarget,
    Identity,
    ModelFlavor,
    PolicyResult,
    Predictor,
    TargetStatus,
)
from mlplatform.core.errors import AuthenticationError, ConfigError
from mlplatform.core.plugins import build_plugin_manager
from mlplatform.core.services import projects


class HeaderAuth(AuthBackend):
    """Trusts ``X-Remote-User`` (as behind an authenticating proxy); ``X-Remote-User: bad`` is refused."""

    name = "remote_user"

    def identity_from_request(self, request):
        user = request.headers.get("X-Remote-User")
        if user is None:
            return None
        if user == "bad":
            raise AuthenticationError("proxy says no")
        return Identity(username=user, backend=self.name)


class EchoTarget(DeploymentTarget):
    name = "echo"

    class Config(Schema):
        replicas = fields.Integer(load_default=1)

    def deploy(self, spec):
        return f"{spec.model}:{spec.version}"

    def status(self, ref):
        return TargetStatus("healthy")

    def undeploy(self, ref):
        return None

    def predict(self, ref, batch):
        return list(batch)


class ConstantFlavor(ModelFlavor):
    name = "constant"

    def detect(self, files):
        return "CONSTANT" in files

    def load(self, path):
        class Always(Predictor):
            def predict(self, frame):
                return [1] * len(frame)

        return Always()


def plugin(**hooks):
    return types.SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


def test_register_auth_backends_adds_a_backend_asked_in_order(make_platform) -> None:
    platform = make_platform(
        {"auth": {"backends": ["remote_user", "token"]}},
        extra_plugins=[plugin(register_auth_backends=lambda: [HeaderAuth])],
    )
    client = create_app(platform, TESTING=True).test_client()
    response = client.get("/api/v1/whoami", headers={"X-Remote-User": "carol"})
    assert response.status_code == 200
    assert response.json["username"] == "carol" and response.json["auth_backend"] == "remote_user"
    assert client.get("/api/v1/whoami", headers={"X-Remote-User": "carol"}).status_code == 200  # user created once
    refused = client.get("/api/v1/whoami", headers={"X-Remote-User": "bad"})
    assert refused.status_code == 401 and refused.json["message"] == "proxy says no"
    assert client.get("/api/v1/whoami").status_code == 401


def test_platform_event_is_told_after_commit_only(make_platform) -> None:
    seen = []
    platform = make_platform(extra_plugins=[plugin(platform_event=lambda event: seen.append(event))])
    admin = Identity("admin", "test", is_admin=True)
    with platform.db.write() as session:
        projects.create_project(session, admin, "p1")
        assert seen == []  # not before commit
    assert [(e.action, e.project) for e in seen] == [("project.create", "p1")]
    with pytest.raises(RuntimeError):
        with platform.db.write() as session:
            projects.create_project(session, admin, "p2")
            raise RuntimeError("roll back")
    assert len(seen) == 1


def test_a_failing_platform_event_plugin_does_not_undo_the_change(make_platform, caplog) -> None:
    def boom(event):
        raise ValueError("plugin bug")

    platform = make_platform(extra_plugins=[plugin(platform_event=boom)])
    with platform.db.write() as session:
        projects.create_project(session, Identity("admin", "test", is_admin=True), "p1")
    with platform.db.read() as session:
        assert projects.get_project(session, "p1").name == "p1"
    assert "failed in platform_event" in caplog.text


def test_check_promotion_collects_every_policy() -> None:
    def needs_accuracy(version, environment, context):
        return [PolicyResult("accuracy", version["accuracy"] >= environment["min_accuracy"], "accuracy gate")]

    def not_on_fridays(context):  # an implementation may take fewer arguments
        return [PolicyResult("calendar", context["weekday"] != "friday", "no friday deploys")]

    pm = build_plugin_manager(
        extra_plugins=[plugin(check_promotion=needs_accuracy), plugin(check_promotion=not_on_fridays)]
    )
    results = [
        r
        for batch in pm.hook.check_promotion(
            version={"accuracy": 0.8}, environment={"min_accuracy": 0.9}, context={"weekday": "friday"}
        )
        for r in batch
    ]
    assert sorted((r.policy, r.passed) for r in results) == [("accuracy", False), ("calendar", False)]


def test_register_deployment_targets_and_model_flavors_are_selectable(make_platform) -> None:
    platform = make_platform(
        {
            "deployment_targets": [{"name": "edge", "backend": "echo", "options": {"replicas": 3}}],
            "environments": [{"name": "staging", "target": "edge"}],
        },
        extra_plugins=[
            plugin(register_deployment_targets=lambda: [EchoTarget], register_model_flavors=lambda: [ConstantFlavor])
        ],
    )
    target_config = platform.config["deployment_targets"][0]
    target = platform.backend(
        "deployment_target", target_config["backend"], target_config["options"], "deployment_targets.0"
    )
    assert target.options == {"replicas": 3} and target.status("m:1").state == "healthy"
    assert "constant" in platform.pm.backends.names("model_flavor")
    with pytest.raises(ConfigError, match=r"deployment_targets.0.options.replica: unknown key"):
        make_platform(
            {"deployment_targets": [{"name": "edge", "backend": "echo", "options": {"replica": 3}}]},
            extra_plugins=[plugin(register_deployment_targets=lambda: [EchoTarget])],
        )
