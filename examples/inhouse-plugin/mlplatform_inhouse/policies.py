"""The ``change_ticket`` promotion policy: a version reaches an environment only with a change ticket.

Configured per environment, next to the built-in policies::

    environments:
      - name: production
        policies:
          require_ticket: "^CHG-\\d+$"     # or true: any non-empty ticket tag

The version must carry a ``ticket`` tag matching the pattern (set it with
``PATCH .../versions/{v}`` ``{"tags": {"ticket": "CHG-1234"}}``). Environments without
``require_ticket`` get no result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mlplatform.core.backends import PolicyResult

TAG = "ticket"


def change_ticket(version: Any, environment: Any) -> list[PolicyResult]:
    """The check; ``version.tags`` and ``environment["policies"]`` as the platform passes them."""
    policies = environment.get("policies") if isinstance(environment, Mapping) else None
    rule = (policies or {}).get("require_ticket")
    if not rule:
        return []
    pattern = r".+" if rule is True else str(rule)
    ticket = str((version.tags or {}).get(TAG, ""))
    if not ticket:
        return [
            PolicyResult("change_ticket", False, f"version {version.version} has no {TAG!r} tag; add the change ticket")
        ]
    if not re.fullmatch(pattern, ticket):
        return [
            PolicyResult("change_ticket", False, f"ticket {ticket!r} does not match {pattern!r}", {"ticket": ticket})
        ]
    return [PolicyResult("change_ticket", True, f"change ticket {ticket}", {"ticket": ticket})]
