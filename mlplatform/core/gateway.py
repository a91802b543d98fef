"""The prediction gateway: rate limit, route by traffic weight, validate, predict, capture.

One ``Gateway`` per serving process. It keeps, per (project, model, environment), a routing
table read in one query: the versions serving with their weights, target references,
signatures and specs. The table is reused until ``ROUTE_TTL_S`` passes or this process
commits a deployment change (``deployments.generation()``), so a steady stream of
predictions costs no database round trip beyond authentication. A reference this process
has not deployed (the ``local`` target keeps models per process) is deployed here once,
when the table is built; a reference the target no longer knows makes the table reload.

Rate limiting is a token bucket per API token (``gateway.rate_limit``): in memory per
process, or shared through Redis, where one Lua script refills and takes a token atomically
using the Redis server's clock. If Redis is unreachable the gateway lets requests through
(and logs it): predictions matter more than the limit.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import random
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select

from mlplatform.core.backends import DeploymentSpec, DeploymentTarget
from mlplatform.core.capture import Capture, CaptureRecord
from mlplatform.core.db.base import utcnow
from mlplatform.core.db.deployments import Deployment, DeploymentVersion
from mlplatform.core.db.models import Project
from mlplatform.core.db.registry import ModelVersion, RegisteredModel
from mlplatform.core.errors import (
    BackendError,
    Conflict,
    InvalidInput,
    MLPlatformError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
)
from mlplatform.core.services import deployments, targets
from mlplatform.core.services.promotions_outcomes import outcomes
from mlplatform.core.signature import validate_inputs

if TYPE_CHECKING:
    from mlplatform.core.platform import Platform

log = logging.getLogger("mlplatform.gateway")

ROUTE_TTL_S = 2.0


# --- routing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServingVersion:
    version: int
    version_id: int
    weight: int
    ref: str
    signature: Mapping[str, Any] | None
    spec: DeploymentSpec


@dataclass
class Route:
    """What one deployment serves, as this process last read it."""

    project: str
    model: str
    environment: str
    status: str
    status_message: str
    target: DeploymentTarget
    serving: dict[int, ServingVersion]  # healthy and loaded here, by version number (weight 0 too)
    others: dict[int, str]  # version number -> status, for versions not serving
    expires: float
    generation: int
    _choices: list[ServingVersion] = field(default_factory=list)
    _cumulative: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        total = 0
        for item in sorted(self.serving.values(), key=lambda s: s.version):
            if item.weight > 0:
                total += item.weight
                self._choices.append(item)
                self._cumulative.append(total)

    def pick(self) -> ServingVersion:
        """A version drawn by weight. ``ServiceUnavailable`` when none takes traffic."""
        if not self._choices:
            detail = f" (deployment {self.status}{': ' + self.status_message if self.status_message else ''})"
            raise ServiceUnavailable(f"model {self.model!r} has no version serving in {self.environment!r} yet{detail}")
        if len(self._choices) == 1:
            return self._choices[0]
        return self._choices[bisect.bisect_right(self._cumulative, random.random() * self._cumulative[-1])]

    def pinned(self, value: str) -> ServingVersion:
        """The version a caller pinned (``3`` or ``v3``): 404 if not deployed here, 409 if not serving."""
        text = value.strip().lower().removeprefix("v")
        if not text.isdigit():
            raise InvalidInput(f"version header must be a version number like 3 or v3, not {value!r}")
        number = int(text)
        if number in self.serving:
            return self.serving[number]
        if number in self.others:
            raise Conflict(
                f"version {number} of model {self.model!r} is {self.others[number]} in {self.environment!r}, not serving"
            )
        raise NotFound(f"version {number} of model {self.model!r} is not deployed in {self.environment!r}")


@dataclass(frozen=True, slots=True)
class Prediction:
    predictions: list[Any]
    version: int


def read_json_body(request: Any, limit: int) -> Any:
    """The JSON body of a werkzeug ``request``, read no further than ``limit`` bytes.

    Raises ``PayloadTooLarge`` (413) beyond the limit, declared or not, and ``InvalidInput``
    for a body that is not JSON.
    """
    try:
        return json.loads(read_body(request, limit))
    except ValueError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None


def read_text_body(request: Any, limit: int) -> str:
    """The UTF-8 text body of a werkzeug ``request``, with ``read_json_body``'s limit."""
    try:
        return read_body(request, limit).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the body is not UTF-8 text: {exc}") from None


def read_body(request: Any, limit: int) -> bytes:
    """The raw body of a werkzeug ``request``, with ``read_json_body``'s limit."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"the body is {length} bytes; the limit is {limit}")
    raw: bytes = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes, the limit")
    return raw


# --- rate limiting --------------------------------------------------------------------------


class RateLimiter(Protocol):
    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if allowed, else seconds until one is available."""


class MemoryTokenBucket:
    """Token buckets in this process: ``rate`` tokens per second, at most ``burst``."""

    MAX_KEYS = 100_000

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.MAX_KEYS:
                    self._buckets.clear()  # full buckets carry no information; start over
                self._buckets[key] = [self.burst - 1.0, now]
                return 0.0
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate


# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst, expiry (ms). Returns the wait in seconds
# as a string (a Lua number would come back truncated to an integer).
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return tostring(wait)
"""


class RedisTokenBucket:
    """The same bucket shared by every gateway process, kept in Redis (atomic Lua script)."""

    PREFIX = "mlplatform:ratelimit:"

    def __init__(self, url: str, rate: float, burst: int, *, client: Any = None) -> None:
        import redis

        self.rate = rate
        self.burst = burst
        self.client = client or redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self.client.register_script(TOKEN_BUCKET_LUA)
        self._expiry_ms = int(math.ceil(burst / rate * 1000)) + 1000
        self._warned = 0.0

    def acquire(self, key: str) -> float:
        import redis

        try:
            return float(self._script(keys=[self.PREFIX + key], args=[self.rate, self.burst, self._expiry_ms]))
        except redis.RedisError as exc:
            now = time.monotonic()
            if now - self._warned > 60:
                self._warned = now
                log.warning("rate limit store unreachable, letting requests through: %s", exc)
            return 0.0

    def close(self) -> None:
        self.client.close()


def build_limiter(config: Mapping[str, Any]) -> MemoryTokenBucket | RedisTokenBucket:
    """The limiter ``gateway.rate_limit`` selects."""
    if config["backend"] == "redis":
        return RedisTokenBucket(config["url"], config["requests_per_second"], config["burst"])
    return MemoryTokenBucket(config["requests_per_second"], config["burst"])


# --- the gateway ----------------------------------------------------------------------------


class Gateway:
    """Routes predictions for one platform process; see the module docstring. Thread-safe."""

    def __init__(self, platform: Platform, *, ttl: float = ROUTE_TTL_S, capture: Capture | None = None) -> None:
        config = platform.config["gateway"]
        self.platform = platform
        self.ttl = ttl
        self.max_body_bytes: int = config["max_body_bytes"]
        self.version_header: str = config["version_header"]
        self.limiter = build_limiter(config["rate_limit"])
        self.capture = capture or Capture.from_config(platform.artifact_store, config["capture"])
        self.outcomes = outcomes(platform)  # every answer per version, for the promotion SLO guard
        self._routes: dict[tuple[str, str, str], Route] = {}
        self._warm: set[tuple[int, str]] = set()  # (id of the target instance, reference) deployed in this process
        weakref.finalize(self, self.capture.close, 5.0)  # at exit too: write what is buffered

    def check_rate(self, key: str) -> None:
        """Raise ``RateLimited`` (429, with ``retry_after`` seconds) when ``key`` is over its rate."""
        wait = self.limiter.acquire(key)
        if wait > 0:
            raise RateLimited(f"rate limit exceeded; retry in {wait:.2f}s", retry_after=max(1, math.ceil(wait)))

    def predict(
        self, project: str, model: str, env: str, body: Mapping[str, Any], *, pin: str | None, request_id: str
    ) -> Prediction:
        """Validate ``body`` against the chosen version's signature and predict with it.

        The version is ``pin`` (a caller's header) or drawn by traffic weight. Raises
        ``NotFound`` (nothing deployed, or the pinned version is not), ``Conflict`` (the pinned
        version is not serving), ``Unprocessable`` naming the bad column or the model's error,
        ``ServiceUnavailable`` (nothing serving yet), ``BackendError`` (the target failed).
        Sampled requests, failed ones included, go to capture after validation.
        """
        start = time.perf_counter()
        key = (project, model, env)
        route = self.route(key)
        chosen = route.pinned(pin) if pin else route.pick()
        frame = validate_inputs(chosen.signature, body)
        capture = self.capture.sampled()
        try:
            try:
                outputs = route.target.predict(chosen.ref, frame)
            except NotFound:
                # The target lost this reference (restarted, undeployed elsewhere): reload the table once.
                self._forget(route, chosen)
                route = self.route(key)
                chosen = route.pinned(str(chosen.version)) if chosen.version in route.serving else route.pick()
                outputs = route.target.predict(chosen.ref, frame)
            outputs = list(outputs)
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, MLPlatformError)
                else BackendError(f"the deployment target failed: {type(exc).__name__}: {exc}")
            )
            self.outcomes.record(project, model, env, chosen.version, False, (time.perf_counter() - start) * 1000.0)
            if capture:
                self._capture(key, chosen.version, request_id, start, error.status, error.message, frame, None)
            if error is exc:
                raise
            raise error from exc
        self.outcomes.record(project, model, env, chosen.version, True, (time.perf_counter() - start) * 1000.0)
        if capture:
            self._capture(key, chosen.version, request_id, start, 200, None, frame, outputs)
        return Prediction(outputs, chosen.version)

    def route(self, key: tuple[str, str, str]) -> Route:
        """The routing table of ``(project, model, env)``, from the cache while it is fresh."""
        route = self._routes.get(key)
        if route is not None and route.generation == deployments.generation() and time.monotonic() < route.expires:
            return route
        route = self._build(key)
        self._routes[key] = route
        return route

    def close(self) -> None:
        self.capture.close()
        if isinstance(self.limiter, RedisTokenBucket):
            self.limiter.close()

    # --- building a table -----------------------------------------------------------------

    def _build(self, key: tuple[str, str, str]) -> Route:
        project, model, env = key
        generation = deployments.generation()
        query = (
            select(
                Deployment.status,
                Deployment.status_message,
                Deployment.target,
                DeploymentVersion.version_id,
                DeploymentVersion.weight,
                DeploymentVersion.status,
                DeploymentVersion.target_ref,
                ModelVersion.version,
                ModelVersion.signature,
                ModelVersion.flavor,
                ModelVersion.artifact_uri,
                ModelVersion.artifact_sha256,
            )
            .select_from(Deployment)
            .join(RegisteredModel, RegisteredModel.id == Deployment.model_id)
            .join(Project, Project.id == Deployment.project_id)
            .outerjoin(DeploymentVersion, DeploymentVersion.deployment_id == Deployment.id)
            .outerjoin(ModelVersion, ModelVersion.id == DeploymentVersion.version_id)
            .where(Project.name == project, RegisteredModel.name == model, Deployment.environment == env)
        )
        with self.platform.db.read() as session:
            rows = session.execute(query).all()
        if not rows or rows[0][0] == "retired":
            targets.environment(self.platform, env)  # an unknown environment is its own 404
            raise NotFound(f"model {model!r} is not deployed to {env!r}")
        status, message, target_name = rows[0][0], rows[0][1], rows[0][2]
        target = targets.target(self.platform, target_name)
        serving: dict[int, ServingVersion] = {}
        others: dict[int, str] = {}
        for row in rows:
            if row.version is None:
                continue
            if row[5] != "healthy" or not row.target_ref:
                others[row.version] = row[5]
                continue
            spec = DeploymentSpec(
                project,
                model,
                row.version,
                row.flavor or "",
                row.artifact_uri,
                row.artifact_sha256 or "",
                row.signature,
            )
            ref = self._warm_up(target, row.target_ref, spec)
            if ref is None:
                others[row.version] = "failed here"
                continue
            serving[row.version] = ServingVersion(row.version, row.version_id, row.weight, ref, row.signature, spec)
        return Route(
            project, model, env, status, message, target, serving, others, time.monotonic() + self.ttl, generation
        )

    def _warm_up(self, target: DeploymentTarget, ref: str, spec: DeploymentSpec) -> str | None:
        """``ref`` usable from this process: deployed here first if the target does not know it."""
        if (id(target), ref) in self._warm:
            return ref
        try:
            if target.status(ref).state == "absent":
                ref = target.deploy(spec)
        except MLPlatformError as exc:
            log.warning(
                "cannot serve %s/%s v%s in this process: %s", spec.project, spec.model, spec.version, exc.message
            )
            return None
        self._warm.add((id(target), ref))
        return ref

    def _forget(self, route: Route, chosen: ServingVersion) -> None:
        self._warm.discard((id(route.target), chosen.ref))
        self._routes.pop((route.project, route.model, route.environment), None)

    def _capture(
        self,
        key: tuple[str, str, str],
        version: int | None,
        request_id: str,
        start: float,
        status: int,
        error: str | None,
        frame: Any,
        outputs: list[Any] | None,
    ) -> None:
        latency_ms = (time.perf_counter() - start) * 1000.0
        self.capture.submit(
            CaptureRecord(
                key[0], key[1], key[2], version, request_id, utcnow(), latency_ms, status, error, frame, outputs
            )
        )
