"""Fixtures for the ``kubernetes`` target: an in-process API emulator and targets pointed at it.

No Kubernetes API server can run on this machine; ``emulator.KubernetesApiEmulator`` (a
thread-served ``http.server`` speaking the few endpoints the target calls) stands in for
one, reached by the real ``kubernetes`` client through a generated kubeconfig.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubernetes.emulator import KubernetesApiEmulator

TOKEN = "emulator-bearer-token-s3cr3t"


@pytest.fixture
def emulator() -> Iterator[KubernetesApiEmulator]:
    with KubernetesApiEmulator() as emu:
        yield emu


def write_kubeconfig(path: Path, server: str, token: str = TOKEN) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [
            {"name": "emulator", "context": {"cluster": "emulator", "user": "tester", "namespace": "default"}}
        ],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def kubeconfig(tmp_path: Path, emulator: KubernetesApiEmulator) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", emulator.url)


@pytest.fixture
def make_target(kubeconfig: Path) -> Iterator[Callable[..., Any]]:
    """``make_target(**options)``: a KubernetesTarget on the emulator, namespace ``models``."""
    from plugins_contrib.kubernetes.target import KubernetesTarget

    made: list[KubernetesTarget] = []

    def make(**options: Any) -> KubernetesTarget:
        target = KubernetesTarget(
            {
                "namespace": "models",
                "image": "registry.example/mlplatform:1.0",
                "kubeconfig": str(kubeconfig),
                **options,
            }
        )
        made.append(target)
        return target

    yield make
    for target in made:
        target.close()
