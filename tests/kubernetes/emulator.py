"""A minimal in-process emulator of the Kubernetes API endpoints the ``kubernetes`` target calls.

No Kubernetes API server can run on this machine (no container runtime, no kind/k3s
binaries), and PyPI's ``kmock`` was unsuitable here: it installs a pytest plugin into every
run that needs pytest-asyncio, and its server is aiohttp-based. So this is a plain
``http.server`` on 127.0.0.1 in a thread, speaking just enough of the API for the real
``kubernetes`` client to talk to it through a kubeconfig:

- ``PATCH`` (server-side apply only), ``GET`` and ``DELETE`` of one named object at
  ``/apis/apps/v1/namespaces/{ns}/deployments/{name}``, ``/api/v1/namespaces/{ns}/services/{name}``
  and ``/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{name}``;
- apply requires ``Content-Type: application/apply-patch+yaml`` (else 415) and a
  ``fieldManager`` (else 422), creates (201) or replaces the applied fields (200), and bumps
  ``metadata.generation`` when the spec changes; objects in a namespace not in
  ``namespaces`` get 404 like a real server;
- errors are ``Status`` objects (``{"kind": "Status", "code", "reason", "message"}``).

What it does not do: merge semantics of field ownership (an apply replaces the object's
spec), admission, defaulting, controllers. Tests drive the Deployment's ``status`` by hand
with ``set_status``, and inject failures with ``fail``. Every request is recorded in
``requests`` (method, path, query, headers, decoded body).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

_PATH = re.compile(
    r"^/(?:api/v1|apis/apps/v1|apis/autoscaling/v2)/namespaces/(?P<ns>[^/]+)/"
    r"(?P<plural>deployments|services|horizontalpodautoscalers)/(?P<name>[^/]+)$"
)
_KINDS = {"deployments": "Deployment", "services": "Service", "horizontalpodautoscalers": "HorizontalPodAutoscaler"}
_GROUPS = {"deployments": "apps", "services": "", "horizontalpodautoscalers": "autoscaling"}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class KubernetesApiEmulator:
    """Start with ``start()`` (or as a context manager); ``url`` is then its base URL."""

    namespaces: set[str] = field(default_factory=lambda: {"default", "models"})
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    faults: dict[tuple[str, str], tuple[int, str, str]] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> KubernetesApiEmulator:
        emulator = self

        class Handler(_Handler):
            owner = emulator

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="k8s-emulator", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> KubernetesApiEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- test controls -------------------------------------------------------------------------

    def fail(self, method: str, plural: str, code: int, reason: str, message: str) -> None:
        """Answer every ``method`` on ``plural`` (e.g. ``"PATCH"``, ``"services"``) with this Status."""
        self.faults[(method, plural)] = (code, reason, message)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self.objects.get((plural, namespace, name))
            return copy.deepcopy(obj)

    def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Replace a Deployment's ``status``, as its controller would."""
        with self._lock:
            self.objects[("deployments", namespace, name)]["status"] = copy.deepcopy(status)

    # --- request handling ------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any]:
        body: Any = None
        if raw:
            try:
                body = yaml.safe_load(raw)  # JSON is YAML: one parser for apply and JSON bodies
            except yaml.YAMLError:
                return _status(400, "BadRequest", "the body is neither JSON nor YAML")
        with self._lock:
            self.requests.append(Recorded(method, path, query, headers, body))
            match = _PATH.match(path)
            if match is None:
                return _status(404, "NotFound", f"the server could not find the requested resource ({method} {path})")
            ns, plural, name = match["ns"], match["plural"], match["name"]
            if (method, plural) in self.faults:
                return _status(*self.faults[(method, plural)])
            key = (plural, ns, name)
            if method == "GET":
                if key not in self.objects:
                    return _not_found(plural, name)
                return 200, self.objects[key]
            if method == "DELETE":
                if self.objects.pop(key, None) is None:
                    return _not_found(plural, name)
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}
            if method == "PATCH":
                return self._apply(key, query, headers, body)
            return _status(405, "MethodNotAllowed", f"{method} is not supported by the emulator")

    def _apply(
        self, key: tuple[str, str, str], query: dict[str, list[str]], headers: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        plural, ns, name = key
        if headers.get("content-type", "").split(";")[0].strip() != "application/apply-patch+yaml":
            return _status(
                415,
                "UnsupportedMediaType",
                f"the emulator only accepts server-side apply, not {headers.get('content-type')}",
            )
        if not query.get("fieldManager"):
            return _status(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
            )
        if ns not in self.namespaces:
            return _status(404, "NotFound", f'namespaces "{ns}" not found')
        if not isinstance(body, dict) or body.get("kind") != _KINDS[plural]:
            return _status(400, "BadRequest", f"the body is not a {_KINDS[plural]}")
        meta = body.get("metadata") or {}
        if meta.get("name") != name or meta.get("namespace", ns) != ns:
            return _status(400, "BadRequest", "the name or namespace of the body does not match the URL")
        existing = self.objects.get(key)
        obj = copy.deepcopy(body)
        obj["metadata"] = {**meta, "namespace": ns}
        if existing is None:
            obj["metadata"].update(uid=str(uuid.uuid4()), generation=1, resourceVersion="1")
            obj["status"] = {}
            self.objects[key] = obj
            return 201, obj
        old_meta = existing["metadata"]
        changed = existing.get("spec") != obj.get("spec")
        obj["metadata"].update(
            uid=old_meta["uid"],
            generation=old_meta["generation"] + int(changed),
            resourceVersion=str(int(old_meta["resourceVersion"]) + 1),
        )
        obj["status"] = existing.get("status", {})
        self.objects[key] = obj
        return 200, obj


def _status(code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _not_found(plural: str, name: str) -> tuple[int, dict[str, Any]]:
    group = _GROUPS[plural]
    resource = f"{plural}.{group}" if group else plural
    return _status(404, "NotFound", f'{resource} "{name}" not found')


class _Handler(BaseHTTPRequestHandler):
    owner: KubernetesApiEmulator
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        code, body = self.owner.handle(self.command, parts.path, parse_qs(parts.query), headers, raw)
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: tests read ``requests`` instead."""
