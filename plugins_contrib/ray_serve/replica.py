"""The class each Ray Serve replica runs: one verified model version, loaded once.

Kept free of Ray imports; the target wraps it with ``serve.deployment`` at deploy time.
Workers import it (and the flavor class) by module path, so ``mlplatform`` and the flavor's
package must be installed on every Ray node.
"""

from __future__ import annotations

from typing import Any

from mlplatform.core.backends import ModelFlavor
from mlplatform.core.model_loading import load_verified


class ModelReplica:
    """Loads ``folder`` with ``flavor`` (and its configured ``options``) after checking it against ``sha256``.

    A mismatch or a load error raises in the constructor, so Serve marks the application
    DEPLOY_FAILED with that message. ``folder`` must be readable on the replica's node.
    """

    def __init__(
        self, folder: str, sha256: str, flavor: type[ModelFlavor], options: dict[str, Any] | None = None
    ) -> None:
        self.predictor = load_verified(folder, sha256, flavor, options)

    def predict(self, records: list[dict[str, Any]]) -> list[Any]:
        """One prediction per record (a row as ``{column: value}``)."""
        return list(self.predictor.predict(records))

    async def __call__(self, request: Any) -> dict[str, Any]:
        """HTTP: ``POST {"records": [...]}`` (or a bare list) -> ``{"predictions": [...]}``."""
        body = await request.json()
        records = body.get("records", []) if isinstance(body, dict) else body
        return {"predictions": self.predict(records)}
