"""Reads what a report shows (see :class:`edgeops.report.data.ReportData`): the EdgeModel,
its FleetRollouts, TrainingRuns, Devices and Events from the API server, and two range
queries from Prometheus (drift per feature, traffic by version). A failed read of anything
but the model itself is a line in ``problems``, so a report is written with what there is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from edgeops.api.constants import (
    DEVICES,
    EDGE_MODEL,
    EDGE_MODELS,
    FLEET_ROLLOUTS,
    TRAINING_RUNS,
)
from edgeops.k8s import events, fleet, objects
from edgeops.metrics.fleet import INFERENCES_TOTAL
from edgeops.metrics.prometheus import Prometheus, PrometheusError
from edgeops.policy import registry
from edgeops.report.data import Curve, FeatureHistory, Points, ReportData

#: Points per range query: enough for smooth plots, few enough for one fast query.
POINTS: Final = 240
#: Shortest step (seconds): Prometheus scrapes every 5 s on the devcluster, 15-30 s usually.
MIN_STEP_SECONDS: Final = 5.0
#: Newest Events shown.
MAX_EVENTS: Final = 40
#: A Kubernetes object name (label values go into PromQL verbatim, so they are checked).
_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

_T = TypeVar("_T")


class ModelNotFoundError(LookupError):
    """The EdgeModel does not exist."""


def step_seconds(since_seconds: float) -> float:
    """The range-query step for a report over ``since_seconds``: about :data:`POINTS`
    points, never below :data:`MIN_STEP_SECONDS`."""
    return max(MIN_STEP_SECONDS, since_seconds / POINTS)


def gather(
    namespace: str,
    name: str,
    since_seconds: float,
    prometheus: Prometheus,
    now: datetime,
) -> ReportData:
    """Everything the report of EdgeModel ``namespace/name`` shows over the last
    ``since_seconds`` before ``now`` (timezone-aware). Raises :class:`ModelNotFoundError`,
    ValueError for a name that is not a Kubernetes object name, and the client's
    ApiException when the model itself cannot be read."""
    for value in (namespace, name):
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes object name")
    model = objects.read_custom(namespace, EDGE_MODELS, name)
    if model is None:
        raise ModelNotFoundError(f"EdgeModel {namespace}/{name} not found")
    data = ReportData(namespace, name, now, since_seconds, model)

    def attempt(what: str, read: Callable[[], _T], default: _T) -> _T:
        try:
            return read()
        except Exception as error:  # any failure is shown, never fatal
            data.problems.append(f"{what}: {type(error).__name__}: {error}"[:300])
            return default

    none: list[dict[str, Any]] = []

    def listed(plural: str) -> list[dict[str, Any]]:
        return attempt(plural, lambda: fleet.list_objects(namespace, plural), none)

    def of_model(obj: dict[str, Any]) -> bool:
        return bool(((obj.get("spec") or {}).get("modelRef") or {}).get("name") == name)

    data.rollouts = sorted(
        filter(of_model, listed(FLEET_ROLLOUTS)),
        key=lambda r: str((r.get("metadata") or {}).get("creationTimestamp") or ""),
    )
    data.runs = {str(r["metadata"]["name"]): r for r in filter(of_model, listed(TRAINING_RUNS))}
    data.lineage = registry.lineage(model, listed(DEVICES))
    found = attempt("Events", lambda: events.involving(namespace, EDGE_MODEL, name), none)
    data.events = found[:MAX_EVENTS]
    start = now - timedelta(seconds=since_seconds)
    step = step_seconds(since_seconds)
    data.drift_history = attempt(
        "drift history (Prometheus)",
        lambda: drift_history(prometheus, namespace, name, start, now, step),
        [],
    )
    data.traffic = attempt(
        "traffic (Prometheus)",
        lambda: traffic(prometheus, namespace, name, start, now, step),
        [],
    )
    return data


def drift_history(
    prometheus: Prometheus, namespace: str, name: str, start: datetime, end: datetime, step: float
) -> list[FeatureHistory]:
    """Each (feature, version, method)'s statistic and threshold between ``start`` and
    ``end`` from the operator's ``edgeops_model_drift_statistic`` and
    ``edgeops_model_drift_threshold`` gauges. Raises PrometheusError."""
    selector = f'{{namespace="{namespace}",model="{name}"}}'
    statistic = prometheus.matrix(f"edgeops_model_drift_statistic{selector}", start, end, step)
    threshold = prometheus.matrix(f"edgeops_model_drift_threshold{selector}", start, end, step)

    def key(labels: dict[str, str]) -> tuple[str, str, str]:
        return labels.get("feature", "?"), labels.get("version", "?"), labels.get("method", "?")

    thresholds = {key(labels): points for labels, points in threshold}
    return sorted(
        (
            FeatureHistory(*key(labels), _finite(points), _finite(thresholds.get(key(labels), [])))
            for labels, points in statistic
        ),
        key=lambda h: (h.feature, h.version),
    )


def traffic(
    prometheus: Prometheus, namespace: str, name: str, start: datetime, end: datetime, step: float
) -> list[Curve]:
    """Inferences per second of the fleet by model version (the gateway's
    ``edgeops_device_inferences_total``, all cohorts and gateway replicas summed).
    Raises PrometheusError."""
    window = f"{max(60, int(4 * step))}s"
    query = (
        f'sum by (version) (rate({INFERENCES_TOTAL}{{namespace="{namespace}",model="{name}"}}'
        f"[{window}]))"
    )
    return sorted(
        (
            Curve(f"v{labels.get('version', '?')}", _finite(points))
            for labels, points in prometheus.matrix(query, start, end, step)
        ),
        key=lambda c: c.label,
    )


def _finite(points: Points) -> Points:
    return [(t, v) for t, v in points if math.isfinite(v)]


__all__ = [
    "ModelNotFoundError",
    "PrometheusError",
    "drift_history",
    "gather",
    "step_seconds",
    "traffic",
]
