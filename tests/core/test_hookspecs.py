"""Every hook is documented to the template and exercised by a test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from mlplatform.core import hookspecs

HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "mlplatform_spec")]
TESTS = Path(__file__).resolve().parents[1]
DESIGN_HOOKS = {
    "register_artifact_stores",
    "register_deployment_targets",
    "register_drift_metrics",
    "register_alert_channels",
    "register_auth_backends",
    "register_secret_backends",
    "register_model_flavors",
    "check_promotion",
    "platform_event",
}


def test_every_design_hook_is_specified() -> None:
    assert set(HOOKS) == DESIGN_HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_hook_docstring_follows_the_template(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert len(doc.splitlines()) >= 6, f"{name}: too short"
    assert "Called " in doc, f"{name}: say when it is called"
    assert "Return" in doc or "return value" in doc, f"{name}: say what it returns"
    assert "None" in doc, f"{name}: say what None means"
    assert "Raise" in doc or "exception" in doc, f"{name}: say what it may raise"
    assert "versionadded" in doc


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_test(name: str) -> None:
    sources = [p.read_text() for p in TESTS.rglob("test_*.py") if p.name != "test_hookspecs.py"]
    assert any(name in source for source in sources), f"no test mentions {name}"
