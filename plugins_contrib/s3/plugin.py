"""Registers the ``s3`` artifact store (Amazon S3 and S3-compatible object stores).

boto3 is imported only when the store is instantiated, so this plugin loads, and lists
itself, without ``pip install 'mlplatform[s3]'``.
"""

from __future__ import annotations

from mlplatform import hookimpl
from mlplatform.core.backends import ArtifactStore
from plugins_contrib.s3.store import S3ArtifactStore

__all__ = ["S3ArtifactStore", "register_artifact_stores"]


@hookimpl
def register_artifact_stores() -> list[type[ArtifactStore]]:
    return [S3ArtifactStore]
