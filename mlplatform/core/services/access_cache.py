"""A per-process memo of the two reads every request makes: who a token is, and which role
a user holds in a project.

Entries live ``auth.cache_seconds`` (default 2; 0 turns the cache off). Any committed change
to users, tokens, projects or memberships in this process clears it at once (it listens to
the platform's events), so a revoked token or a removed member is refused on the next
request here; another process sees the change within ``cache_seconds``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from mlplatform.core.backends import Identity, PlatformEvent
from mlplatform.core.db.models import Project
from mlplatform.core.services import access

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

V = TypeVar("V")
INVALIDATING = ("user.", "token.", "project.", "member.")
MAX_ENTRIES = 10_000


class AccessCache:
    def __init__(self, platform: Platform, ttl: float) -> None:
        self.platform = platform
        self.ttl = ttl
        self._entries: dict[tuple[object, ...], tuple[float, object]] = {}
        self._lock = threading.Lock()
        platform.subscribe(self._on_event)

    def remember(self, key: tuple[object, ...], load: Callable[[], V]) -> V:
        if self.ttl <= 0:
            return load()
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]  # type: ignore[return-value]
        value = load()
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now + self.ttl, value)
        return value

    def project_and_role(self, identity: Identity, project_name: str) -> tuple[Project, str | None]:
        def load() -> tuple[Project, str | None]:
            with self.platform.db.read() as session:
                return access.project_and_role(session, identity, project_name)

        return self.remember(("role", identity.user_id, identity.is_admin, project_name), load)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _on_event(self, event: PlatformEvent) -> None:
        if event.action.startswith(INVALIDATING):
            self.clear()


def access_cache(platform: Platform) -> AccessCache:
    return platform.shared("access_cache", lambda: AccessCache(platform, platform.config["auth"]["cache_seconds"]))
