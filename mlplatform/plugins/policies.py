"""Built-in promotion policies (``check_promotion``), configured per environment::

    environments:
      - name: production
        policies:
          min_metrics: {accuracy: 0.9}                 # accuracy >= 0.9
          metric_gates: ["auc >= current + 0.01", "log_loss <= current * 1.05"]
          healthy_in_previous_minutes: 30
          require_reference: true

- ``metric_gate``: the version's run metrics (frozen at registration) against a number, or
  against the version serving the environment now (``current``). A relative gate passes
  when nothing serves yet; a metric missing on either side fails it.
- ``healthy_in_previous``: the version has served the previous environment for N minutes
  and no alert of that deployment was firing during them.
- ``reference_data``: the version has reference data for monitoring.

Environments without policies get no results. Keys other than these are for in-house
policies and ignored here.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Mapping
from typing import Any

from mlplatform import hookimpl
from mlplatform.core.backends import PolicyResult

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


@hookimpl
def check_promotion(version: Any, environment: Any, context: Any) -> list[PolicyResult]:
    policies = environment.get("policies") if isinstance(environment, Mapping) else None
    if not policies:
        return []
    results = []
    gates = [
        {
            "metric": name,
            "op": ">=",
            "relative": False,
            "operator": None,
            "value": value,
            "expression": f"{name} >= {value}",
        }
        for name, value in (policies.get("min_metrics") or {}).items()
    ]
    for gate in gates + list(policies.get("metric_gates") or []):
        results.append(metric_gate(gate, version, context))
    if policies.get("healthy_in_previous_minutes") is not None:
        results.append(healthy_in_previous(int(policies["healthy_in_previous_minutes"]), context))
    if policies.get("require_reference"):
        results.append(
            PolicyResult("reference_data", True, "the version has reference data")
            if context.has_reference
            else PolicyResult(
                "reference_data",
                False,
                "the version has no reference data for monitoring; PUT .../versions/{v}/reference first",
            )
        )
    return results


def metric_gate(gate: Mapping[str, Any], version: Any, context: Any) -> PolicyResult:
    """One gate from ``PoliciesSchema``: absolute or relative to ``context.current``."""
    name, expression = gate["metric"], gate["expression"]
    value = version.metrics.get(name)
    details: dict[str, Any] = {"gate": expression, "metric": name, "value": value}
    if value is None:
        return PolicyResult(
            "metric_gate", False, f"{expression}: version {version.version} has no metric {name!r} in its run", details
        )
    threshold = float(gate["value"])
    if gate["relative"]:
        current = context.current
        if current is None:
            return PolicyResult(
                "metric_gate",
                True,
                f"{expression}: nothing serves {context.environment} yet; relative gate not applied",
                details,
            )
        base = current.metrics.get(name)
        details.update(current_version=current.version, current_value=base)
        if base is None:
            return PolicyResult(
                "metric_gate",
                False,
                f"{expression}: the serving version {current.version} has no metric {name!r}",
                details,
            )
        threshold = {"+": base + threshold, "-": base - threshold, "*": base * threshold}.get(
            gate["operator"] or "+", base
        )
    details["threshold"] = threshold
    passed = COMPARE[gate["op"]](float(value), threshold)
    verdict = "passes" if passed else "fails"
    return PolicyResult(
        "metric_gate", passed, f"{expression}: {name} = {value:g} {verdict} ({gate['op']} {threshold:g})", details
    )


def healthy_in_previous(minutes: int, context: Any) -> PolicyResult:
    previous = context.previous
    if previous is None:
        return PolicyResult(
            "healthy_in_previous", False, f"{context.environment} is the first environment; nothing comes before it"
        )
    details: dict[str, Any] = {"environment": previous.name, "minutes": minutes}
    if not previous.serving or previous.healthy_since is None:
        return PolicyResult("healthy_in_previous", False, f"the version does not serve {previous.name}", details)
    served = (context.now - previous.healthy_since).total_seconds() / 60.0
    details["served_minutes"] = round(served, 2)
    if served < minutes:
        return PolicyResult(
            "healthy_in_previous",
            False,
            f"the version has served {previous.name} for {served:.1f} of {minutes} minutes",
            details,
        )
    window_start = context.now - dt.timedelta(minutes=minutes)
    alerts = [
        a
        for a in previous.alerts
        if a["resolved_at"] is None or dt.datetime.fromisoformat(a["resolved_at"]) >= window_start
    ]
    if alerts:
        details["alerts"] = alerts
        names = ", ".join(sorted({a["rule"] for a in alerts}))
        return PolicyResult(
            "healthy_in_previous",
            False,
            f"alerts fired in {previous.name} in the last {minutes} minutes: {names}",
            details,
        )
    return PolicyResult(
        "healthy_in_previous", True, f"served {previous.name} for {served:.1f} minutes with no alert", details
    )
