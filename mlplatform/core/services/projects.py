"""Projects (tenants) and their members."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mlplatform.core.backends import Identity
from mlplatform.core.db.models import ROLES, Membership, Project, User
from mlplatform.core.errors import Conflict, InvalidInput, NotFound
from mlplatform.core.services import audit
from mlplatform.core.services.access import get_project
from mlplatform.core.services.identity import get_user
from mlplatform.core.services.pagination import Page, paginate

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform


def create_project(
    session: Session, identity: Identity, name: str, description: str = "", *, platform: Platform | None = None
) -> Project:
    """Create a project; its creator becomes its admin."""
    if session.scalar(select(Project.id).where(Project.name == name)) is not None:
        raise Conflict(f"project {name!r} already exists")
    project = Project(name=name, description=description, created_by=identity.username)
    session.add(project)
    session.flush()
    if identity.user_id is not None:
        session.add(Membership(project_id=project.id, user_id=identity.user_id, role="admin"))
    audit.record(
        session,
        actor=identity.username,
        action="project.create",
        resource_type="project",
        resource_id=name,
        project=name,
        summary={"description": description},
        platform=platform,
    )
    return project


def list_projects(session: Session, identity: Identity, page_size: int, page_token: str | None) -> Page[Project]:
    query = select(Project)
    if not identity.is_admin:
        query = query.join(Membership, Membership.project_id == Project.id).where(
            Membership.user_id == identity.user_id
        )
    return paginate(session, query, Project.id, page_size, page_token)


def update_project(
    session: Session, identity: Identity, name: str, changes: dict[str, Any], *, platform: Platform | None = None
) -> Project:
    project = get_project(session, name)
    before = {key: getattr(project, key) for key in changes}
    for key, value in changes.items():
        setattr(project, key, value)
    audit.record(
        session,
        actor=identity.username,
        action="project.update",
        resource_type="project",
        resource_id=name,
        project=name,
        summary={"before": before, "after": changes},
        platform=platform,
    )
    return project


def list_members(session: Session, project_name: str) -> list[tuple[Membership, User]]:
    project = get_project(session, project_name)
    rows = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.project_id == project.id)
        .order_by(User.username)
    )
    return [(m, u) for m, u in rows]


def get_member(session: Session, project_name: str, username: str) -> tuple[Membership, User]:
    project = get_project(session, project_name)
    user = get_user(session, username)
    membership = session.get(Membership, (project.id, user.id))
    if membership is None:
        raise NotFound(f"{username!r} is not a member of project {project_name!r}")
    return membership, user


def _admin_count(session: Session, project_id: int) -> int:
    return (
        session.scalar(select(func.count()).where(Membership.project_id == project_id, Membership.role == "admin")) or 0
    )


def set_member(
    session: Session,
    identity: Identity,
    project_name: str,
    username: str,
    role: str,
    *,
    platform: Platform | None = None,
) -> tuple[Membership, User, bool]:
    """Add ``username`` with ``role`` or change their role. Returns (membership, user, created)."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}", errors={"role": [f"must be one of {', '.join(ROLES)}"]})
    project = get_project(session, project_name)
    user = get_user(session, username)
    membership = session.get(Membership, (project.id, user.id))
    before = membership.role if membership else None
    if membership is None:
        membership = Membership(project_id=project.id, user_id=user.id, role=role)
        session.add(membership)
    else:
        if before == "admin" and role != "admin" and _admin_count(session, project.id) <= 1:
            raise Conflict(f"{username!r} is the last admin of project {project_name!r}; make someone else admin first")
        membership.role = role
    session.flush()
    if before != role:
        audit.record(
            session,
            actor=identity.username,
            action="member.set_role",
            resource_type="membership",
            resource_id=f"{project_name}/{username}",
            project=project_name,
            summary={"from": before, "to": role},
            platform=platform,
        )
    return membership, user, before is None


def remove_member(
    session: Session, identity: Identity, project_name: str, username: str, *, platform: Platform | None = None
) -> None:
    """Remove a member. Removing someone who is not a member is not an error."""
    project = get_project(session, project_name)
    user = get_user(session, username)
    membership = session.get(Membership, (project.id, user.id))
    if membership is None:
        return
    if membership.role == "admin" and _admin_count(session, project.id) <= 1:
        raise Conflict(f"{username!r} is the last admin of project {project_name!r}; make someone else admin first")
    session.delete(membership)
    audit.record(
        session,
        actor=identity.username,
        action="member.remove",
        resource_type="membership",
        resource_id=f"{project_name}/{username}",
        project=project_name,
        summary={"role": membership.role},
        platform=platform,
    )
