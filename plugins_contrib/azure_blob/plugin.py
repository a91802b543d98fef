"""Registers the ``azure_blob`` artifact store (Azure Blob Storage, and Azurite).

azure-storage-blob is imported only when the store is instantiated, so this plugin loads,
and lists itself, without ``pip install 'mlplatform[azure]'``.
"""

from __future__ import annotations

from mlplatform import hookimpl
from mlplatform.core.backends import ArtifactStore
from plugins_contrib.azure_blob.store import AzureBlobArtifactStore

__all__ = ["AzureBlobArtifactStore", "register_artifact_stores"]


@hookimpl
def register_artifact_stores() -> list[type[ArtifactStore]]:
    return [AzureBlobArtifactStore]
