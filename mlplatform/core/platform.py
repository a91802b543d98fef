"""Platform: the config, the plugin manager, the selected backends, the database and the queue.

One object per process (the API app, a worker, a CLI command, a test). Everything it selects
is instantiated here, at start-up, so a missing SDK or a bad option fails before the first
request with a message that names the fix.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from mlplatform.core import config as config_module
from mlplatform.core.backends import ArtifactStore, AuthBackend, Backend, PlatformEvent
from mlplatform.core.db.session import Database, normalise_url
from mlplatform.core.errors import ConfigError
from mlplatform.core.plugins import PlatformPluginManager, build_plugin_manager

log = logging.getLogger("mlplatform")
T = TypeVar("T")


class Platform:
    def __init__(
        self, raw_config: dict[str, Any], *, extra_plugins: Iterable[Any] = (), load_entry_points: bool = True
    ) -> None:
        self._shared: dict[str, Any] = {}
        self._shared_lock = threading.RLock()  # a component may build another while being built
        self._listeners: list[Callable[[PlatformEvent], None]] = []
        plugins = config_module.validate_schema(config_module.PluginsSchema(), raw_config.get("plugins"), "plugins")
        self.pm: PlatformPluginManager = build_plugin_manager(
            block=plugins["block"],
            require=plugins["require"],
            extra_plugins=extra_plugins,
            load_entry_points=load_entry_points,
        )
        self.config = config_module.load_config(raw_config, self.pm.backends, self)
        self.secrets = self.config.pop("_secret_backend")
        self.data_dir = Path(self.config["data_dir"]).expanduser().resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        url = self.config["database"]["url"] or f"sqlite:///{self.data_dir / 'mlplatform.db'}"
        self.database_url = normalise_url(url)
        self.db = Database(
            self.database_url,
            echo=self.config["database"]["echo"],
            pool_size=self.config["database"]["pool_size"],
            publish=self.publish,
        )
        store = self.config["artifact_store"]
        self.artifact_store: ArtifactStore = self._instantiate(
            "artifact_store", store["backend"], store["options"], "artifact_store"
        )  # type: ignore[assignment]
        self.auth_backends: list[AuthBackend] = [
            self._instantiate("auth_backend", name, self.config["auth"]["options"][name], f"auth.backends.{i}")  # type: ignore[misc]
            for i, name in enumerate(self.config["auth"]["backends"])
        ]
        from mlplatform.core.jobs import build_job_queue

        self.jobs = build_job_queue(self, self.config["jobs"])

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Platform:
        """Build from ``path``, or ``MLPLATFORM_CONFIG``, or the embedded default."""
        return cls(config_module.read_config_file(path), **kwargs)

    def _instantiate(self, kind: str, name: str, options: dict[str, Any], path: str) -> Backend:
        cls = self.pm.backends.get(kind, name, f"{path}.backend" if not path.startswith("auth.") else path)
        try:
            return cls(options, self)
        except ConfigError:
            raise
        except ImportError as exc:
            hint = cls.install_hint or f"install the package that provides {kind} {name!r}"
            raise ConfigError(path, f"{kind} {name!r} cannot start: {exc}; {hint}") from None

    def backend(self, kind: str, name: str, options: dict[str, Any], path: str) -> Backend:
        """Instantiate a configured backend by kind and name (targets, channels, metrics)."""
        return self._instantiate(kind, name, options, path)

    def shared(self, key: str, build: Callable[[], T]) -> T:
        """The platform's one instance of something built on first use (a deployment target,
        an alert channel); anything with a ``close()`` is closed with the platform."""
        found = self._shared.get(key)
        if found is not None:
            return found  # type: ignore[no-any-return]
        with self._shared_lock:
            if key not in self._shared:
                self._shared[key] = build()
            return self._shared[key]  # type: ignore[no-any-return]

    @cached_property
    def environments(self) -> list[dict[str, Any]]:
        return list(self.config["environments"])

    def subscribe(self, listener: Callable[[PlatformEvent], None]) -> None:
        """Also tell ``listener`` (in-process caches) about every committed change."""
        self._listeners.append(listener)

    def publish(self, event: PlatformEvent) -> None:
        """Tell ``platform_event`` implementations and subscribers about a committed change;
        failures are logged."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("listener %r failed for %s", listener, event.action)
        for impl in reversed(self.pm.hook.platform_event.get_hookimpls()):
            try:
                impl.function(*[event for _ in impl.argnames])
            except Exception:
                log.exception("plugin %r failed in platform_event for %s", impl.plugin_name, event.action)

    def close(self) -> None:
        for component in reversed(list(self._shared.values())):
            close = getattr(component, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("closing %r failed", component)
        self._shared.clear()
        self.jobs.close()
        for backend in [self.artifact_store, *self.auth_backends, self.secrets]:
            backend.close()
        self.db.dispose()
