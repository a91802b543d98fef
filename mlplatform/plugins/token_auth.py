"""Built-in ``token`` auth backend: ``Authorization: Bearer mlp_...`` API tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlplatform import hookimpl
from mlplatform.core.backends import AuthBackend, Identity
from mlplatform.core.services import identity as identity_service
from mlplatform.core.services.access_cache import access_cache

if TYPE_CHECKING:
    from flask import Request


class TokenAuth(AuthBackend):
    name = "token"

    def identity_from_request(self, request: Request) -> Identity | None:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.startswith(identity_service.TOKEN_PREFIX):
            return None
        assert self.platform is not None
        token = credential.strip()
        cache = access_cache(self.platform)
        return cache.remember(("token", identity_service.hash_token(token)), lambda: self._resolve(token))

    def _resolve(self, token: str) -> Identity:
        assert self.platform is not None
        with self.platform.db.read() as session:
            identity, stale = identity_service.identity_for_token(session, token, self.name)
        if stale:
            with self.platform.db.write() as session:
                identity_service.touch_token(session, identity.token_id)
        return identity


@hookimpl(trylast=True)
def register_auth_backends() -> list[type[AuthBackend]]:
    return [TokenAuth]
