"""The ``JobQueue`` interface every backend implements, its options, and :func:`build_job_queue`."""

from __future__ import annotations

import importlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy.orm import Session

from mlplatform.core.db.models import Job
from mlplatform.core.db.session import after_commit
from mlplatform.core.errors import ConfigError
from mlplatform.core.jobs.recovery import recover_orphaned_jobs

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

#: Job name -> ``"module:function"``. Features add their jobs here; nothing registers on import.
HANDLERS: dict[str, str] = {
    "compute_monitor_window": "mlplatform.core.monitoring.window_job:compute_monitor_window",
    "deliver_alert_notification": "mlplatform.core.services.alert_delivery:deliver_notification",
    "deploy_version": "mlplatform.core.services.deployment_jobs:deploy_version",
    "promotion_notify": "mlplatform.core.services.promotions_state:deliver_notification",
    "promotion_step": "mlplatform.core.services.promotions_rollout:promotion_step",
    "undeploy_deployment": "mlplatform.core.services.deployment_jobs:undeploy_deployment",
    "validate_model_version": "mlplatform.core.services.registry_validation:validate_model_version",
}

HandlerRef = str | Callable[..., Any]


# --- options ------------------------------------------------------------------------------


class _CommonOptions(Schema):
    class Meta:
        unknown = RAISE

    heartbeat_interval = fields.Float(
        load_default=10.0,
        validate=validate.Range(min=0.05),
        metadata={"description": "seconds between a running job's heartbeats"},
    )
    stale_after = fields.Float(
        load_default=60.0,
        validate=validate.Range(min=0.1),
        metadata={"description": "a job whose heartbeat is older than this is orphaned and recovered"},
    )
    retry_backoff = fields.Float(
        load_default=2.0,
        validate=validate.Range(min=0),
        metadata={"description": "seconds before the first retry; doubles with each attempt"},
    )
    retry_backoff_max = fields.Float(load_default=60.0, validate=validate.Range(min=0))
    handlers = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=100)),
        values=fields.String(validate=validate.Regexp(r"^[\w.]+:\w+$", error="must be 'module:function'")),
        load_default=dict,
        metadata={"description": "extra job handlers, name -> 'module:function' (in-house jobs)"},
    )

    @validates_schema
    def _stale_after_heartbeats(self, data: dict[str, Any], **_: Any) -> None:
        if data["stale_after"] <= 2 * data["heartbeat_interval"]:
            raise ValidationError("must be more than twice heartbeat_interval", "stale_after")


class InlineOptions(_CommonOptions):
    workers = fields.Integer(
        load_default=4,
        validate=validate.Range(min=1, max=256),
        metadata={"description": "threads that run jobs in the server process"},
    )
    quiet_before_start = fields.Float(
        load_default=0.02,
        validate=validate.Range(min=0),
        metadata={
            "description": "seconds without an API request in this process before a job starts (0: at once): "
            "jobs share the server's CPU and interpreter, so they wait for a gap between requests"
        },
    )
    max_start_delay = fields.Float(
        load_default=2.0,
        validate=validate.Range(min=0),
        metadata={"description": "a job waits at most this long for that gap, then starts anyway"},
    )


class RQOptions(_CommonOptions):
    url = fields.String(
        load_default="redis://127.0.0.1:6379/0",
        validate=validate.Regexp(r"^(redis|rediss|unix)://", error="must be a redis://, rediss:// or unix:// URL"),
        metadata={"secret": True},
    )
    queue = fields.String(load_default="mlplatform", validate=validate.Regexp(r"^[\w.:-]{1,100}$"))
    recovery_interval = fields.Float(
        load_default=15.0,
        validate=validate.Range(min=0.05),
        metadata={"description": "seconds between a worker's sweeps for orphaned jobs"},
    )


# --- the interface ------------------------------------------------------------------------


class JobQueue(ABC):
    """What the platform enqueues on. Subclasses implement dispatch and the liveness probes."""

    name: ClassVar[str]
    Options: ClassVar[type[Schema]]

    def __init__(
        self, platform: Platform, options: Mapping[str, Any], handlers: Mapping[str, HandlerRef] | None = None
    ) -> None:
        self.platform = platform
        self.heartbeat_interval: float = options["heartbeat_interval"]
        self.stale_after: float = options["stale_after"]
        self.retry_backoff: float = options["retry_backoff"]
        self.retry_backoff_max: float = options["retry_backoff_max"]
        #: This queue's job table: :data:`HANDLERS`, then ``options.handlers``, then ``handlers``.
        self.handlers: dict[str, HandlerRef] = {**HANDLERS, **options["handlers"], **(handlers or {})}

    def enqueue(
        self,
        session: Session,
        name: str,
        args: dict[str, Any],
        *,
        project: str | None = None,
        max_attempts: int = 3,
        timeout: int = 600,
    ) -> str:
        """Add a queued ``Job`` row in ``session``; dispatch it once the transaction commits.

        Returns the job id. Raises ``ValueError`` for an unknown name or bad limits. ``args``
        must be JSON: ids and small values, never objects (the handler reloads what it needs).
        """
        if name not in self.handlers:
            raise ValueError(f"unknown job {name!r}; known jobs: {', '.join(sorted(self.handlers)) or 'none'}")
        if max_attempts < 1 or timeout < 1:
            raise ValueError("max_attempts and timeout must be at least 1")
        job_id = str(uuid.uuid4())
        # a Core insert on the session's connection: enqueueing sits on hot write paths, and
        # the row has no ORM relationships for a unit of work to order
        session.connection().execute(
            _INSERT_JOB,
            {
                "id": job_id,
                "name": name,
                "args": dict(args),
                "state": "queued",
                "attempts": 0,
                "max_attempts": max_attempts,
                "timeout_seconds": timeout,
                "project": project,
            },
        )
        after_commit(session, lambda: self._dispatch(job_id, timeout=timeout, max_attempts=max_attempts, fresh=True))
        return job_id

    def recover(self) -> list[str]:
        """Re-dispatch or fail orphaned jobs; see :func:`recover_orphaned_jobs`."""
        return recover_orphaned_jobs(self.platform)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.retry_backoff * 2 ** (attempt - 1), self.retry_backoff_max))

    def resolve(self, name: str) -> Callable[..., Any]:
        ref = self.handlers[name]
        return ref if callable(ref) else _import_handler(ref)

    def request_started(self) -> None:
        """This process began serving an API request. A backend whose jobs share the server's
        CPU may hold them back until requests pause; the default does nothing."""
        return None

    def request_finished(self) -> None:
        """The request that ``request_started`` announced is done (also when it failed)."""
        return None

    @property
    @abstractmethod
    def worker_name(self) -> str:
        """Written to ``Job.worker`` by jobs this process runs."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the backend cannot take jobs (``/ready``)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _dispatch(self, job_id: str, *, timeout: int, max_attempts: int, fresh: bool = False) -> None:
        """Hand a committed, queued job id to the backend (replacing any stale copy of it).

        ``fresh``: the id was just created by ``enqueue``, so the backend holds no copy of it."""

    @abstractmethod
    def _is_pending(self, job_id: str) -> bool:
        """Whether the backend still holds ``job_id`` (waiting or being picked up)."""

    @abstractmethod
    def _worker_gone(self, worker: str | None) -> bool:
        """Whether ``worker`` is known to be dead even though its heartbeat is not stale yet."""

    @abstractmethod
    def _maintain_backend(self) -> None:
        """Backend-side clean-up run at the start of each recovery sweep."""


_INSERT_JOB = Job.__table__.insert()


@cache
def _import_handler(ref: str) -> Callable[..., Any]:
    module, _, function = ref.partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


def build_job_queue(
    platform: Platform, config: Mapping[str, Any], *, handlers: Mapping[str, HandlerRef] | None = None
) -> JobQueue:
    """Instantiate the backend named by ``config["backend"]`` with validated ``config["options"]``.

    Raises ``ConfigError`` with the dotted key (``jobs.options.workers``) for a bad option.
    """
    from mlplatform.core.config import validate_schema
    from mlplatform.core.jobs.inline import InlineJobQueue  # here: the backends import this module
    from mlplatform.core.jobs.rq import RQJobQueue

    backends: dict[str, type[JobQueue]] = {"inline": InlineJobQueue, "rq": RQJobQueue}
    cls = backends.get(config["backend"])
    if cls is None:
        raise ConfigError("jobs.backend", f"unknown job backend {config['backend']!r}; available: inline, rq")
    options = validate_schema(cls.Options(), config.get("options") or {}, "jobs.options")
    return cls(platform, options, handlers)
