"""The ``validate_model_version`` job: load a finalized version once, off the request path.

Fetches the version's folder through ``model_loading`` (the SHA-256 recorded at finalize is
checked before any model code runs), loads it with its flavor and, when the folder holds
``input_example.json``, validates the example against the signature and predicts on it:
one output per row is required. Success moves the version to ``ready`` (and fills the
signature's outputs if they were unknown); any error moves it to ``failed`` with the reason.
Safe to run twice: only a ``pending`` version is touched.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, bindparam, select, update

from mlplatform.core import wire_json
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.jobs.runner import succeed_in
from mlplatform.core.model_loading import (
    available_flavors,
    cache_root,
    fetch_artifact,
    flavor_options,
    folder_files,
    pick_flavor,
    read_descriptor,
    to_list,
)
from mlplatform.core.services import audit
from mlplatform.core.services.registry_versions import INPUT_EXAMPLE
from mlplatform.core.signature import infer_outputs, validate_inputs

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.registry")
ACTOR = "system"


def validate_model_version(platform: Platform, version_id: int) -> None:
    """Job handler: check version ``version_id`` and record ``ready`` or ``failed``."""
    with platform.db.read() as session:
        found = session.execute(_PENDING_VERSION, {"id": version_id}).first()
    if found is None:
        return
    outputs = None
    try:
        outputs = _check(platform, found.artifact_uri, found.artifact_sha256, found.flavor, found.signature)
    except Exception as exc:  # any failure is the version's reason, shown to its owner
        log.info("model version %s failed validation: %s", version_id, exc)
        _record(platform, found, "failed", f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}", None)
        return
    _record(platform, found, "ready", "", outputs)


# What the job needs of a version still to be validated. Once finalized, a version's files,
# flavor and signature never change, nor do model and project names, so reading them here,
# outside the write transaction, is safe; the write re-checks only that it is still pending.
_PENDING_VERSION = (
    select(
        ModelVersion.id,
        ModelVersion.version,
        ModelVersion.artifact_uri,
        ModelVersion.artifact_sha256,
        ModelVersion.flavor,
        ModelVersion.signature,
        RegisteredModel.name.label("model"),
        Project.name.label("project"),
    )
    .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
    .join(Project, Project.id == RegisteredModel.project_id)
    .where(
        ModelVersion.id == bindparam("id"),
        ModelVersion.status == "pending",
        ModelVersion.artifact_sha256.is_not(None),
    )
)


def _check(
    platform: Platform, uri: str, sha256: str, flavor_name: str | None, signature: Any
) -> list[dict[str, Any]] | None:
    """Load and smoke-test; returns inferred output columns when the signature lacked them."""
    folder = fetch_artifact(platform.artifact_store, uri, sha256, cache_root(platform))
    files = folder_files(folder)
    flavor = pick_flavor(available_flavors(platform), flavor_name or read_descriptor(folder).get("flavor"), files)
    predictor = flavor(flavor_options(platform, flavor), platform).load(str(folder))
    if INPUT_EXAMPLE not in files:
        return None
    body = json.loads((Path(folder) / INPUT_EXAMPLE).read_text(encoding="utf-8"))
    frame = validate_inputs(signature, body)
    predictions = to_list(predictor.predict(frame))
    if len(predictions) != len(frame):
        raise ValueError(f"the model returned {len(predictions)} predictions for {len(frame)} example rows")
    wire_json.dumps(predictions)  # predictions must be JSON to be served
    if signature is not None and not signature.get("outputs"):
        return infer_outputs(predictions)
    return None


def _record(
    platform: Platform, found: Row[Any], status: str, message: str, outputs: list[dict[str, Any]] | None
) -> None:
    """Move the version to ``status``, audited, unless something else moved it first (deleted, or a second run)."""
    values: dict[str, Any] = {"status": status, "status_message": message, "updated_at": utcnow()}
    if outputs is not None and found.signature is not None:
        values["signature"] = {**found.signature, "outputs": outputs}
    with platform.db.write() as session:
        moved = session.execute(
            update(ModelVersion)
            .where(ModelVersion.id == found.id, ModelVersion.status == "pending")
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return
        audit.record(
            session,
            actor=ACTOR,
            action=f"model_version.{status}",
            resource_type="model_version",
            resource_id=found.id,
            project=found.project,
            summary={"model": found.model, "version": found.version, "message": message},
            platform=platform,
        )
        succeed_in(session)  # the job ends with this commit
