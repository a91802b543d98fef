"""First start: create the admin user and a token, kept 0600 in the data dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from mlplatform.core.db.models import User
from mlplatform.core.services import identity

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

TOKEN_FILE = "admin-token"


def bootstrap_admin(platform: Platform) -> tuple[Path, str | None]:
    """Create the first admin and its token if there are no users yet.

    Returns the token file's path and the token when it was just created (print it once),
    or None when the platform was already bootstrapped (say where the file is).
    """
    path = platform.data_dir / TOKEN_FILE
    with platform.db.write() as session:
        if session.scalar(select(func.count()).select_from(User)):
            return path, None
        username = platform.config["server"]["bootstrap_admin"]
        user = identity.create_user(session, "bootstrap", username, is_admin=True, platform=platform)
        _token, plaintext = identity.issue_token(session, "bootstrap", user, "bootstrap", platform=platform)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(plaintext + "\n")
        os.chmod(path, 0o600)
    return path, plaintext
