"""Object names, label values and references for the ``kubernetes`` target.

One model version is three objects (Deployment, Service, HorizontalPodAutoscaler) that share
one name, ``mlp-<project>-<model>-v<version>``. A Service name must be a DNS-1035 label (at
most 63 characters of ``a-z0-9-``, starting with a letter: the ``mlp-`` prefix sees to that).
When the plain name would not be one, or could be read two ways, it gets an 8-hex suffix
hashed from the exact (project, model, version), so two versions never share a name:

- characters outside ``a-z0-9-`` become ``-`` (``Churn_Model`` -> ``churn-model``), + suffix;
- a project with a ``-`` (``a-b``/``c`` and ``a``/``b-c`` would both read ``mlp-a-b-c``), + suffix;
- longer than 63 characters: cut to 54, + suffix.

Label values follow the same idea with their own alphabet (``A-Za-z0-9_.-``); the exact
project, model and version are also written to annotations, which have no such limits.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:8]


def resource_name(project: str, model: str, version: int | str) -> str:
    """The shared name of a version's objects; see the module docstring for the rules."""
    plain = f"mlp-{project}-{model}-v{version}"
    name = _DASHES.sub("-", _NOT_DNS.sub("-", plain.lower())).strip("-")
    if name == plain and "-" not in project and len(name) <= MAX_NAME:
        return name
    head = name[: MAX_NAME - 9].rstrip("-")
    return f"{head}-{_digest(project, model, str(version))}"


def label_value(value: str) -> str:
    """``value`` if it is a valid label value, else a sanitised, hash-suffixed stand-in."""
    if len(value) <= MAX_NAME and _LABEL_VALUE.match(value):
        return value
    cleaned = _NOT_LABEL.sub("_", value).strip("_.-")
    return f"{cleaned[: MAX_NAME - 9].rstrip('_.-')}-{_digest(value)}".lstrip("-")


def reference(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def parse_reference(ref: str) -> tuple[str, str] | None:
    """``(namespace, name)`` from ``"<namespace>/<name>"``, or None if ``ref`` is not one."""
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name or "/" in name:
        return None
    return namespace, name
