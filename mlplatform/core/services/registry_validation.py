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

from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
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
        version = session.get(ModelVersion, version_id)
        if version is None or version.status != "pending" or version.artifact_sha256 is None:
            return
        uri, sha256, flavor_name, signature = (
            version.artifact_uri,
            version.artifact_sha256,
            version.flavor,
            version.signature,
        )
    outputs = None
    try:
        outputs = _check(platform, uri, sha256, flavor_name, signature)
    except Exception as exc:  # any failure is the version's reason, shown to its owner
        log.info("model version %s failed validation: %s", version_id, exc)
        _record(platform, version_id, "failed", f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}", None)
        return
    _record(platform, version_id, "ready", "", outputs)


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
    json.dumps(predictions)  # predictions must be JSON to be served
    if signature is not None and not signature.get("outputs"):
        return infer_outputs(predictions)
    return None


def _record(
    platform: Platform, version_id: int, status: str, message: str, outputs: list[dict[str, Any]] | None
) -> None:
    with platform.db.write() as session:
        version = session.get(ModelVersion, version_id, with_for_update=True)
        if version is None or version.status != "pending":
            return
        version.status, version.status_message, version.updated_at = status, message, utcnow()
        if outputs is not None and version.signature is not None:
            version.signature = {**version.signature, "outputs": outputs}
        model = session.get(RegisteredModel, version.model_id)
        project = session.get(Project, model.project_id) if model else None
        audit.record(
            session,
            actor=ACTOR,
            action=f"model_version.{status}",
            resource_type="model_version",
            resource_id=version.id,
            project=project.name if project else None,
            summary={"model": model.name if model else None, "version": version.version, "message": message},
            platform=platform,
        )
