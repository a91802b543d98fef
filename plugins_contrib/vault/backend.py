"""``vault``: secrets from HashiCorp Vault or OpenBao (KV version 2), read through hvac.

``path#key`` is field ``key`` of the latest version of the KV v2 secret ``path`` under
``mount``: ``mlplatform/db#password`` reads ``GET /v1/secret/data/mlplatform/db``.

Authentication is a token or an AppRole login. Before a read the backend renews its token
(``renew-self``) when it is renewable and less than half of its TTL is left, and with AppRole
logs in again when the token has expired, renewal failed or a read was refused. Secrets are
cached in memory, per path, for ``cache_ttl`` seconds (0 turns the cache off).

Errors are ``SecretNotFound`` (no such path, latest version deleted, no such key),
``SecretAccessDenied`` (policy, bad or expired credentials) and ``VaultUnavailable``
(unreachable, sealed, server error). They name ``path#key``; no value or credential ever
reaches a message or a log record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from mlplatform.core.backends import SecretBackend
from mlplatform.core.errors import BackendError, ConfigError, SecretAccessDenied, SecretNotFound

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.secrets.vault")

INSTALL_HINT = "pip install 'mlplatform[vault]'"


class VaultUnavailable(ConfigError, BackendError):
    """The vault could not be reached, is sealed, or answered with a server error.

    A ``ConfigError`` so start-up reports it at the dotted path of the ``$secret`` reference,
    and a ``BackendError`` because the fault is outside the platform.
    """

    status = 502
    code = "secret_backend_unavailable"


class VaultConfig(Schema):
    url = fields.Url(
        required=True,
        require_tld=False,
        schemes={"http", "https"},
        metadata={"description": "server address, e.g. https://vault.example.com:8200"},
    )
    mount = fields.String(
        load_default="secret", validate=validate.Length(min=1), metadata={"description": "KV v2 mount point"}
    )
    auth_method = fields.String(load_default="token", validate=validate.OneOf(["token", "approle"]))
    token = fields.String(load_default=None, metadata={"secret": True, "description": "for auth_method token"})
    role_id = fields.String(load_default=None, metadata={"secret": True, "description": "for auth_method approle"})
    secret_id = fields.String(load_default=None, metadata={"secret": True, "description": "for auth_method approle"})
    approle_mount = fields.String(load_default="approle", validate=validate.Length(min=1))
    namespace = fields.String(load_default=None, metadata={"description": "Vault Enterprise / OpenBao namespace"})
    cache_ttl = fields.Float(
        load_default=60.0, validate=validate.Range(min=0), metadata={"description": "seconds; 0 disables"}
    )
    timeout = fields.Float(
        load_default=10.0,
        validate=validate.Range(min=0, min_inclusive=False),
        metadata={"description": "seconds per request"},
    )
    verify = fields.Boolean(load_default=True, metadata={"description": "verify the server's TLS certificate"})
    ca_cert = fields.String(load_default=None, metadata={"description": "CA bundle file to verify against"})

    @validates_schema
    def _credentials(self, data: dict[str, Any], **_: Any) -> None:
        required = {"token": ["token"], "approle": ["role_id", "secret_id"]}[data.get("auth_method", "token")]
        for name in required:
            if not data.get(name):
                raise ValidationError(
                    f"required when auth_method is {data.get('auth_method', 'token')!r}", field_name=name
                )


class VaultSecrets(SecretBackend):
    """Reads KV v2 secrets from Vault or OpenBao; see the module docstring for the contract."""

    name = "vault"
    Config = VaultConfig
    install_hint = INSTALL_HINT

    def __init__(self, options: Mapping[str, Any] | None = None, platform: Platform | None = None) -> None:
        super().__init__(options, platform)
        try:
            import hvac
            import requests
        except ImportError as exc:
            raise ImportError(f"the 'vault' secret backend needs hvac: {INSTALL_HINT}") from exc
        self._exceptions = hvac.exceptions
        self._request_error = requests.exceptions.RequestException
        settings = VaultConfig().load(self.options)
        self._url: str = settings["url"]
        self._mount: str = settings["mount"].strip("/")
        self._approle_mount: str = settings["approle_mount"].strip("/")
        self._auth_method: str = settings["auth_method"]
        self._credentials = {k: settings[k] for k in ("token", "role_id", "secret_id") if settings[k]}
        self._cache_ttl: float = settings["cache_ttl"]
        # token="" rather than None: hvac would otherwise pick up VAULT_TOKEN or ~/.vault-token.
        self._client = hvac.Client(
            url=self._url,
            token=self._credentials.get("token", ""),
            namespace=settings["namespace"],
            timeout=settings["timeout"],
            verify=settings["ca_cert"] or settings["verify"],
        )
        self._lock = threading.RLock()
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._token_known = False  # lease state below filled in by lookup or login
        self._lease = 0.0
        self._expires_at: float | None = None  # monotonic; None: never expires or unknown
        self._renewable = False

    def __repr__(self) -> str:
        return f"<VaultSecrets {self._url} mount={self._mount} auth={self._auth_method}>"

    # --- reading --------------------------------------------------------------------------

    def get(self, path: str, key: str) -> str:
        path = path.strip("/")
        ref = f"{path}#{key}"
        with self._lock:
            data = self._cached(path)
            if data is None:
                data = self._read(path, ref)
                if self._cache_ttl > 0:
                    self._cache[path] = (time.monotonic() + self._cache_ttl, data)
        if key not in data:
            keys = ", ".join(sorted(map(str, data))[:20]) or "none"
            raise SecretNotFound("", f"secret {ref} not found: {self._mount}/{path} has no key {key!r} (keys: {keys})")
        value = data[key]
        return value if isinstance(value, str) else json.dumps(value)

    def _cached(self, path: str) -> dict[str, Any] | None:
        entry = self._cache.get(path)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._cache[path]
            return None
        log.debug("secret %s served from the cache", path)
        return entry[1]

    def _read(self, path: str, ref: str) -> dict[str, Any]:
        forbidden = (self._exceptions.Forbidden, self._exceptions.Unauthorized)
        with self._translated(ref, path):
            self._prepare_token(ref)
            try:
                return self._read_once(path)
            except forbidden:
                if self._auth_method != "approle":
                    raise
                # The token may have been revoked or expired early: a fresh login decides.
                log.info("vault refused a read with the current token; logging in again with AppRole")
                self._login(ref)
                return self._read_once(path)

    def _read_once(self, path: str) -> dict[str, Any]:
        response = self._client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=self._mount, raise_on_deleted_version=True
        )
        log.debug("read secret %s/%s version %s", self._mount, path, response["data"]["metadata"].get("version"))
        return dict(response["data"]["data"] or {})

    @contextlib.contextmanager
    def _translated(self, ref: str, path: str) -> Iterator[None]:
        """Turn hvac and requests exceptions into the platform's, without chaining them."""
        exc = self._exceptions
        try:
            yield
        except exc.InvalidPath:
            raise SecretNotFound(
                "", f"secret {ref} not found: no KV v2 secret at {self._mount}/{path}, or its latest version is deleted"
            ) from None
        except (exc.Forbidden, exc.Unauthorized):
            raise SecretAccessDenied(
                "",
                f"read of secret {ref} denied: permission denied on {self._mount}/data/{path} "
                "(the token's policies do not allow it, or the token is invalid or expired)",
            ) from None
        except (exc.VaultDown, exc.VaultNotInitialized):
            raise VaultUnavailable(
                "", f"cannot read secret {ref}: the vault at {self._url} is sealed or not initialised"
            ) from None
        except (exc.InternalServerError, exc.BadGateway, exc.RateLimitExceeded, exc.UnexpectedError) as error:
            raise VaultUnavailable(
                "", f"cannot read secret {ref}: the vault at {self._url} failed: {self._reason(error)}"
            ) from None
        except exc.VaultError as error:
            raise ConfigError(
                "", f"cannot read secret {ref}: the vault refused the request: {self._reason(error)}"
            ) from None
        except self._request_error as error:
            raise VaultUnavailable(
                "", f"cannot read secret {ref}: the vault at {self._url} is unreachable ({type(error).__name__})"
            ) from None

    def _reason(self, error: Exception) -> str:
        """The server's own error text, shortened, with any configured credential blanked out."""
        text = "; ".join(str(e).strip() for e in (getattr(error, "errors", None) or [])) or type(error).__name__
        for credential in self._credentials.values():
            text = text.replace(credential, "***")
        return text[:300]

    # --- token lifecycle ------------------------------------------------------------------

    def _prepare_token(self, ref: str) -> None:
        """Log in, look the token up, renew it or log in again, as its lease requires."""
        if not self._token_known:
            if self._auth_method == "approle":
                self._login(ref)
            else:
                self._lookup()
        if self._expires_at is None:
            return
        remaining = self._expires_at - time.monotonic()
        if remaining > self._lease / 2:
            return
        if remaining > 0 and self._renewable and self._renew():
            return
        if self._auth_method == "approle":
            self._login(ref)
        # With a plain token there is nothing else to try: the read reports the refusal.

    def _lookup(self) -> None:
        try:
            data = self._client.auth.token.lookup_self()["data"]
        except self._exceptions.VaultError as error:
            # A token may lack lookup-self (no "default" policy): reads still decide.
            log.info("vault token lookup failed (%s); token renewal is off", type(error).__name__)
            self._token_known = True
            return
        self._token_known = True
        self._set_lease(float(data.get("ttl") or 0), bool(data.get("renewable")))

    def _renew(self) -> bool:
        try:
            auth = self._client.auth.token.renew_self()["auth"]
        except (self._exceptions.VaultError, self._request_error) as error:
            log.warning("vault token renewal failed (%s)", type(error).__name__)
            return False
        self._set_lease(float(auth.get("lease_duration") or 0), bool(auth.get("renewable")))
        log.info("renewed the vault token; TTL %ss", int(self._lease))
        return True

    def _login(self, ref: str) -> None:
        self._client.token = ""
        self._token_known = False
        try:
            auth = self._client.auth.approle.login(
                role_id=self._credentials["role_id"],
                secret_id=self._credentials["secret_id"],
                mount_point=self._approle_mount,
            )["auth"]
        except (
            self._exceptions.InvalidRequest,
            self._exceptions.Forbidden,
            self._exceptions.Unauthorized,
            self._exceptions.InvalidPath,
        ) as error:
            raise SecretAccessDenied(
                "",
                f"cannot read secret {ref}: AppRole login at auth/{self._approle_mount} refused: {self._reason(error)}",
            ) from None
        self._token_known = True
        self._set_lease(float(auth.get("lease_duration") or 0), bool(auth.get("renewable")))
        log.info("logged in to the vault with AppRole; token TTL %ss", int(self._lease))

    def _set_lease(self, ttl: float, renewable: bool) -> None:
        self._lease = ttl
        self._expires_at = time.monotonic() + ttl if ttl > 0 else None
        self._renewable = renewable

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            self._client.adapter.close()
