"""Registers the ``vault`` secret backend (HashiCorp Vault / OpenBao, KV v2).

hvac is imported only when the backend is instantiated, so this plugin loads, and lists
itself, without ``pip install 'mlplatform[vault]'``.
"""

from __future__ import annotations

from mlplatform import hookimpl
from mlplatform.core.backends import SecretBackend
from plugins_contrib.vault.backend import VaultSecrets, VaultUnavailable

__all__ = ["VaultSecrets", "VaultUnavailable", "register_secret_backends"]


@hookimpl
def register_secret_backends() -> list[type[SecretBackend]]:
    return [VaultSecrets]
