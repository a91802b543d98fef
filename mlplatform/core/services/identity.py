"""Users and API tokens. A token is shown once; the database keeps only its SHA-256."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.models import ApiToken, User
from mlplatform.core.errors import AuthenticationError, Conflict, NotFound, PermissionDenied
from mlplatform.core.services import audit

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

TOKEN_PREFIX = "mlp_"
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)  # don't write on every request


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    return user


def create_user(
    session: Session,
    actor: str,
    username: str,
    *,
    email: str | None = None,
    display_name: str = "",
    is_admin: bool = False,
    platform: Platform | None = None,
) -> User:
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(username=username, email=email, display_name=display_name, is_admin=is_admin, is_active=True)
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="user.create",
        resource_type="user",
        resource_id=username,
        summary={"is_admin": is_admin, "email": email},
        platform=platform,
    )
    return user


def issue_token(
    session: Session,
    actor: str,
    user: User,
    name: str,
    *,
    expires_at: dt.datetime | None = None,
    platform: Platform | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the row and the plaintext, which is never stored."""
    if expires_at is not None and expires_at <= utcnow():
        raise Conflict("expires_at is in the past")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id, name=name, token_hash=hash_token(plaintext), prefix=plaintext[:10], expires_at=expires_at
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="token.issue",
        resource_type="api_token",
        resource_id=token.id,
        summary={"user": user.username, "name": name, "expires_at": expires_at.isoformat() if expires_at else None},
        platform=platform,
    )
    return token, plaintext


def list_tokens(session: Session, user_id: int) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)))


def revoke_token(session: Session, identity: Identity, token_id: int, *, platform: Platform | None = None) -> ApiToken:
    """Revoke a token of one's own (admins: anyone's). Revoking twice is not an error."""
    token = session.get(ApiToken, token_id)
    if token is None or (token.user_id != identity.user_id and not identity.is_admin):
        raise NotFound(f"token {token_id} does not exist")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        owner = session.get(User, token.user_id)
        audit.record(
            session,
            actor=identity.username,
            action="token.revoke",
            resource_type="api_token",
            resource_id=token.id,
            summary={"user": owner.username if owner else None, "name": token.name},
            platform=platform,
        )
    return token


_TOKEN_LOOKUP = (
    select(
        ApiToken.id,
        ApiToken.revoked_at,
        ApiToken.expires_at,
        ApiToken.last_used_at,
        User.id,
        User.username,
        User.is_admin,
        User.is_active,
    )
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)


def identity_for_token(session: Session | Connection, plaintext: str, backend: str = "token") -> tuple[Identity, bool]:
    """Resolve a bearer token to an Identity, and whether its last-used time is stale enough
    to record (see ``touch_token``). Raises AuthenticationError for an unknown, revoked or
    expired token, or a deactivated user. Reads only; runs on every request, so it is one
    cached Core statement rather than ORM objects."""
    row = session.execute(_TOKEN_LOOKUP, {"token_hash": hash_token(plaintext)}).first()
    if row is None:
        raise AuthenticationError("invalid token")
    token_id, revoked_at, expires_at, last_used_at, user_id, username, is_admin, is_active = row
    now = utcnow()
    if revoked_at is not None:
        raise AuthenticationError("token has been revoked")
    if expires_at is not None and expires_at <= now:
        raise AuthenticationError("token has expired")
    if not is_active:
        raise AuthenticationError("user is deactivated")
    stale = last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION
    return Identity(username=username, backend=backend, user_id=user_id, is_admin=is_admin, token_id=token_id), stale


def touch_token(session: Session, token_id: int) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))


def user_for_identity(session: Session, identity: Identity) -> Identity:
    """Map an Identity from an external backend (OIDC) to a platform user, creating it on first sight."""
    if identity.user_id is not None:
        return identity
    user = session.scalar(select(User).where(User.username == identity.username))
    if user is None:
        user = create_user(session, f"{identity.backend}:{identity.username}", identity.username)
    if not user.is_active:
        raise PermissionDenied("user is deactivated")
    return Identity(identity.username, identity.backend, user.id, user.is_admin, identity.token_id, identity.claims)
