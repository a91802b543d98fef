"""Turn a registered model version's artifact folder into a loaded predictor.

Shared by every deployment target (the in-process ``local`` target and the ``ray_serve``
replicas) and by the registry, which records the digest at registration:

- ``artifact_sha256(folder)`` / ``store_sha256(store, prefix)``: the version's digest, the
  SHA-256 over the sorted list of (relative path, file SHA-256) pairs (see ``combine_digests``);
- ``fetch_artifact``: copy ``artifact_uri`` (a prefix in the platform's artifact store) into
  ``<data_dir>/model-cache/<sha256>/``, verified, atomically (temp folder, then rename);
- ``pick_flavor``: the flavor class that loads a folder;
- ``load_verified``: verify a local folder, then load it; ``load_model`` does all of it.

A digest mismatch raises ``ArtifactIntegrityError`` before any model code runs: loading a
model (a pickle, a ``model.py``) executes code from the artifact, so only the bytes that were
registered may be loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplatform.core.backends import ArtifactStore, DeploymentSpec, ModelFlavor, Predictor
from mlplatform.core.errors import ArtifactNotFound, InvalidInput, Unprocessable
from mlplatform.core.plugins import INSTALL_HINTS

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

DESCRIPTOR = "mlplatform-model.json"
CACHE_FOLDER = "model-cache"
CHUNK = 1024 * 1024
_TEMP_PREFIX = ".fetch-"


class ArtifactIntegrityError(Unprocessable):
    """The artifact's bytes do not match the SHA-256 recorded when the version was registered."""

    code = "artifact_integrity"


# --- digests ----------------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of one file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def combine_digests(entries: Iterable[tuple[str, str]]) -> str:
    """The artifact digest: SHA-256 over ``path NUL file-sha256 LF`` for each entry, sorted by path.

    ``path`` is relative to the artifact folder, ``/``-separated, UTF-8; ``file-sha256`` is the
    lowercase hex digest of the file's bytes. An empty folder has the digest of no bytes.
    """
    digest = hashlib.sha256()
    for path, file_digest in sorted(entries):
        digest.update(path.encode("utf-8") + b"\0" + file_digest.encode("ascii") + b"\n")
    return digest.hexdigest()


def folder_files(folder: str | os.PathLike[str]) -> list[str]:
    """Relative, ``/``-separated paths of every regular file under ``folder``, sorted."""
    root = Path(folder)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def artifact_sha256(folder: str | os.PathLike[str]) -> str:
    """The digest (``combine_digests``) of a local artifact folder."""
    return combine_digests((rel, file_sha256(Path(folder) / rel)) for rel in folder_files(folder))


def store_sha256(store: ArtifactStore, prefix: str) -> str:
    """The digest (``combine_digests``) of the files under ``prefix`` in ``store``, streamed.

    Raises ``ArtifactNotFound`` if nothing is stored under ``prefix``.
    """
    prefix = _folder_prefix(prefix)
    entries = []
    for info in store.list(prefix):
        digest = hashlib.sha256()
        with store.open(info.path) as stream:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                digest.update(chunk)
        entries.append((_relative(info.path, prefix), digest.hexdigest()))
    if not entries:
        raise ArtifactNotFound(f"no model artifact under {prefix!r}")
    return combine_digests(entries)


def verify_folder(folder: str | os.PathLike[str], expected_sha256: str) -> None:
    """Raise ``ArtifactIntegrityError`` unless ``folder``'s digest is ``expected_sha256``."""
    actual = artifact_sha256(folder)
    if actual != expected_sha256.lower():
        raise ArtifactIntegrityError(
            f"model artifact digest mismatch: registered sha256 {expected_sha256}, found {actual}; "
            "the artifact was changed after registration, nothing was loaded"
        )


# --- fetching -----------------------------------------------------------------------------------


def cache_root(platform: Platform) -> Path:
    """``<data_dir>/model-cache``: verified artifact folders, one per digest."""
    return Path(platform.data_dir) / CACHE_FOLDER


def fetch_artifact(store: ArtifactStore, artifact_uri: str, sha256: str, cache_dir: str | os.PathLike[str]) -> Path:
    """A verified local copy of the folder ``artifact_uri`` in ``store``: ``<cache_dir>/<sha256>``.

    A cached copy is re-verified and used; a corrupt one is replaced. A fresh copy is written
    to a temporary folder beside it, verified, then renamed into place, so no reader ever sees
    a partial folder and concurrent fetches of the same digest are safe. Raises
    ``ArtifactNotFound`` if the prefix holds nothing and ``ArtifactIntegrityError`` on a
    digest mismatch (the temporary copy is removed).
    """
    sha256 = _check_digest(sha256)
    cache = Path(cache_dir)
    target = cache / sha256
    if target.is_dir():
        try:
            verify_folder(target, sha256)
            return target
        except ArtifactIntegrityError:
            shutil.rmtree(target, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=cache))
    try:
        _download(store, _folder_prefix(artifact_uri), temp)
        verify_folder(temp, sha256)
        try:
            os.rename(temp, target)
        except OSError:
            if not target.is_dir():  # anything but "another fetch got there first"
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def _download(store: ArtifactStore, prefix: str, into: Path) -> None:
    count = 0
    for info in store.list(prefix):
        rel = _relative(info.path, prefix)
        destination = into / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        with store.open(info.path) as stream, open(destination, "wb") as out:
            shutil.copyfileobj(stream, out, CHUNK)
        count += 1
    if count == 0:
        raise ArtifactNotFound(f"no model artifact under {prefix!r}")


def _folder_prefix(uri: str) -> str:
    uri = uri.strip("/")
    if not uri:
        raise InvalidInput("artifact_uri must name a folder in the artifact store, e.g. 'models/churn/3/'")
    return uri + "/"


def _relative(path: str, prefix: str) -> str:
    rel = path[len(prefix) :]
    if not rel or rel.startswith("/") or ".." in rel.split("/"):
        raise InvalidInput(f"artifact path {path!r} is not inside {prefix!r}")
    return rel


def _check_digest(sha256: str) -> str:
    value = (sha256 or "").lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidInput(f"artifact_sha256 must be 64 hex characters, got {sha256!r}")
    return value


# --- flavors and loading ------------------------------------------------------------------------


def available_flavors(platform: Platform) -> dict[str, type[ModelFlavor]]:
    """Every model flavor class the platform's plugins registered, by name."""
    return {name: entry.cls for name, entry in platform.pm.backends.entries("model_flavor").items()}  # type: ignore[misc]


def read_descriptor(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The folder's ``mlplatform-model.json`` (flavor, signature, flavor options), or ``{}``.

    Raises ``InvalidInput`` if the file exists but is not a JSON object.
    """
    path = Path(folder) / DESCRIPTOR
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{DESCRIPTOR} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{DESCRIPTOR} must hold a JSON object")
    return data


def pick_flavor(flavors: Mapping[str, type[ModelFlavor]], name: str | None, files: list[str]) -> type[ModelFlavor]:
    """The flavor class for a folder with ``files``.

    With ``name`` (the version's recorded flavor) that flavor must be registered and must
    recognise the files. Without it, the single flavor whose ``detect`` accepts the files.
    Raises ``InvalidInput`` otherwise, naming what is available.
    """
    if name:
        cls = flavors.get(name)
        if cls is None:
            hint = f"; {INSTALL_HINTS[name]}" if name in INSTALL_HINTS else ""
            raise InvalidInput(
                f"model flavor {name!r} is not installed; available: {', '.join(sorted(flavors)) or 'none'}{hint}"
            )
        if not cls(None, None).detect(files):
            raise InvalidInput(f"the artifact is not a {name!r} model (files: {', '.join(files[:10])})")
        return cls
    matches = [n for n, cls in sorted(flavors.items()) if cls(None, None).detect(files)]
    if len(matches) != 1:
        found = f"it matches {', '.join(matches)}" if matches else "no flavor recognises it"
        raise InvalidInput(f"cannot tell the artifact's flavor: {found}; record the flavor at registration")
    return flavors[matches[0]]


def flavor_options(platform: Platform, flavor: type[ModelFlavor]) -> dict[str, Any]:
    """The options config gives ``flavor`` (``model_flavors.<name>``, validated at start-up), else its defaults."""
    options = platform.config.get("model_flavors", {}).get(flavor.name)
    return dict(options) if options is not None else flavor.Config().load({})


def load_verified(
    folder: str | os.PathLike[str], sha256: str, flavor: type[ModelFlavor], options: Mapping[str, Any] | None = None
) -> Predictor:
    """Verify ``folder`` against ``sha256``, then load it with ``flavor`` and its ``options``.

    Loading runs code from the artifact (unpickling, importing ``model.py``); the digest check
    comes first so only registered bytes ever run. Used where the folder is already local
    (e.g. inside a Ray Serve replica).
    """
    verify_folder(folder, sha256)
    return flavor(options, None).load(str(folder))


def load_model(platform: Platform, spec: DeploymentSpec) -> Predictor:
    """Fetch, verify and load ``spec``'s artifact through ``platform``'s store and flavors."""
    folder = fetch_artifact(platform.artifact_store, spec.artifact_uri, spec.artifact_sha256, cache_root(platform))
    name = spec.flavor or read_descriptor(folder).get("flavor")
    flavor = pick_flavor(available_flavors(platform), name, folder_files(folder))
    # fetch_artifact has just verified this folder; load it directly.
    return flavor(flavor_options(platform, flavor), platform).load(str(folder))


def to_list(predictions: Any) -> list[Any]:
    """Predictions as a JSON-friendly list: numpy arrays / pandas objects become plain values."""
    if hasattr(predictions, "tolist"):
        return list(predictions.tolist())
    return [
        item.item() if hasattr(item, "item") and not isinstance(item, (list, dict)) else item for item in predictions
    ]
