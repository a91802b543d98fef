"""Who may do what: roles per project (viewer < developer < maintainer < admin) and global admins.

Routes declare the permission they need; ``authorize`` is the one place that checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.models import ROLES, Membership, Project
from mlplatform.core.errors import NotFound, PermissionDenied

RANK = {role: rank for rank, role in enumerate(ROLES)}


@dataclass(frozen=True)
class Permission:
    """``scope`` is ``public``, ``authenticated``, ``admin`` or ``project``; ``role`` for project scope."""

    scope: str
    role: str | None = None

    def describe(self) -> str:
        return f"project:{self.role}" if self.scope == "project" else self.scope


PUBLIC = Permission("public")
AUTHENTICATED = Permission("authenticated")
ADMIN = Permission("admin")


def project_role(role: str) -> Permission:
    if role not in RANK:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return Permission("project", role)


def get_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise NotFound(f"project {name!r} does not exist")
    return project


def project_named(session: Session, project: Project | str) -> Project:
    """``project`` itself when the caller already holds it, else the project of that name.

    The API passes the project its permission check loaded (projects are never renamed or
    deleted, so that row stays right), saving hot write paths a read.
    """
    return project if isinstance(project, Project) else get_project(session, project)


def role_in(session: Session, identity: Identity, project: Project) -> str | None:
    if identity.is_admin:
        return "admin"
    return session.scalar(
        select(Membership.role).where(Membership.project_id == project.id, Membership.user_id == identity.user_id)
    )


def project_and_role(session: Session, identity: Identity, project_name: str) -> tuple[Project, str | None]:
    """The project and the caller's role in it (None: not a member); ``NotFound`` if it does not exist."""
    row = session.execute(
        select(Project, Membership.role)
        .outerjoin(Membership, and_(Membership.project_id == Project.id, Membership.user_id == identity.user_id))
        .where(Project.name == project_name)
    ).first()
    if row is None:
        raise NotFound(f"project {project_name!r} does not exist")
    project, role = row
    return project, "admin" if identity.is_admin else role


def authorize(
    session: Session | None,
    identity: Identity | None,
    permission: Permission,
    project_name: str | None,
    *,
    lookup: Callable[[Identity, str], tuple[Project, str | None]] | None = None,
) -> Project | None:
    """Raise ``PermissionDenied`` unless ``identity`` holds ``permission``; return the project if any.

    ``lookup`` replaces the database read of the project and role (the API's per-process cache).
    """
    if permission.scope == "public":
        return None
    if identity is None:
        raise PermissionDenied("authentication required")
    if permission.scope == "authenticated":
        return None
    if permission.scope == "admin":
        if not identity.is_admin:
            raise PermissionDenied("this needs a platform admin")
        return None
    if project_name is None:
        raise PermissionDenied("route declares a project permission but names no project")
    if lookup is not None:
        project, role = lookup(identity, project_name)
    else:
        assert session is not None
        project, role = project_and_role(session, identity, project_name)
    if role is None:
        raise PermissionDenied(f"you are not a member of project {project_name!r}")
    assert permission.role is not None
    if RANK[role] < RANK[permission.role]:
        raise PermissionDenied(f"this needs the {permission.role} role in project {project_name!r}; you are {role}")
    return project
