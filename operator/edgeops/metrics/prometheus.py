"""Prometheus HTTP API queries for FleetRollout analysis and the drift monitor.

The drift monitor (:func:`fleet_counts`) runs two instant queries per model and
measurement: the per-feature bin counts of the version the fleet runs, ``sum by (feature,
bin) (increase(...[window]))`` over all cohorts and gateway replicas, and the labelled
feedback ``sum by (outcome)``; a failure is the counts' ``error`` (verdict Error).

:func:`measure` turns one :class:`~edgeops.api.fleetrollout.AnalysisMetric` into one
:class:`~edgeops.policy.rollout.Measurement`:

- the metric's PromQL with ``{{namespace}}``, ``{{model}}``, ``{{version}}``,
  ``{{stableVersion}}`` and ``{{cohort}}`` replaced (:func:`render`; ``{{ model }}`` with
  spaces works too), run as an instant query (``GET /api/v1/query``);
- the sample count from the gateway's inference counter for the canary cohort over the
  analysis interval (:func:`samples_query`), never from the user's query, so a query that
  happens to return a number without traffic behind it cannot pass;
- for ``baseline: VsStable`` the same query for the stable cohort and stable version;
- the verdict from :func:`edgeops.policy.rollout.evaluate_value`: too few samples, an empty
  vector or NaN is Inconclusive. Any failure to get an answer (no URL configured,
  connection refused, timeout, HTTP error status, a body that is not the API's JSON, an
  error status in it, more than one series) is Error, with the reason in the message.
  Neither is ever a pass or a failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import httpx

from edgeops.api.fleetrollout import AnalysisMetric
from edgeops.metrics.fleet import (
    FEATURE_OBSERVATIONS_TOTAL,
    FEEDBACK_TOTAL,
    INFERENCES_TOTAL,
)
from edgeops.policy.drift import FleetCounts
from edgeops.policy.promql import PLACEHOLDER
from edgeops.policy.rollout import Measurement, evaluate_value

#: Longest error text kept in a measurement message.
_MAX_ERROR: Final = 300


class PrometheusError(Exception):
    """The query got no usable answer; the message says why (no verdict can be drawn)."""


@dataclass(frozen=True)
class QueryContext:
    """What the placeholders stand for: the rollout's namespace, model, target version and
    stable version (None when unknown: ``{{stableVersion}}`` becomes an empty string)."""

    namespace: str
    model: str
    version: int
    stable_version: int | None


def render(query: str, context: QueryContext, cohort: str, version: int | None = None) -> str:
    """``query`` with its placeholders replaced for ``cohort`` (``canary`` or ``stable``);
    ``{{version}}`` is ``version`` when given, else the target version."""
    values = {
        "namespace": context.namespace,
        "model": context.model,
        "version": str(context.version if version is None else version),
        "stableVersion": "" if context.stable_version is None else str(context.stable_version),
        "cohort": cohort,
    }
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], query)


def samples_query(context: QueryContext, cohort: str, version: int, interval: str) -> str:
    """Inferences of one cohort and version over ``interval`` (a Go/PromQL duration),
    summed over gateway replicas (``increase`` handles counter resets)."""
    selector = (
        f'namespace="{context.namespace}",model="{context.model}",'
        f'version="{version}",cohort="{cohort}"'
    )
    return f"sum(increase({INFERENCES_TOTAL}{{{selector}}}[{interval}]))"


class Prometheus:
    """A Prometheus HTTP API client for instant queries (``base_url`` as
    ``http(s)://host[:port]``, ``timeout`` in seconds). ``client`` is for tests."""

    def __init__(
        self, base_url: str | None, timeout: float, client: httpx.Client | None = None
    ) -> None:
        self.base_url = (base_url or "").rstrip("/")
        self.timeout = timeout
        self._client = client

    def value(self, query: str, at: datetime | None = None) -> float | None:
        """The one number ``query`` returns: None for an empty vector, NaN as NaN.
        Raises :class:`PrometheusError` for every other outcome."""
        return _one_value(self._data(query, at))

    def vector(self, query: str, at: datetime | None = None) -> list[tuple[dict[str, str], float]]:
        """Every series of an instant vector ``query`` returns, as (labels, value) pairs
        (NaN kept as NaN; empty list for an empty vector). Raises :class:`PrometheusError`
        when there is no answer or the answer is not a vector."""
        data = self._data(query, at)
        if not isinstance(data, Mapping) or data.get("resultType") != "vector":
            kind = data.get("resultType") if isinstance(data, Mapping) else None
            raise PrometheusError(f"the query returned a {kind}; expected a vector")
        try:
            return [
                ({str(k): str(v) for k, v in r["metric"].items()}, float(r["value"][1]))
                for r in data.get("result") or []
            ]
        except (TypeError, KeyError, IndexError, ValueError, AttributeError) as error:
            raise PrometheusError(f"unreadable Prometheus result: {error}") from error

    def matrix(
        self, query: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """Every series of a range query (``/api/v1/query_range``) as (labels, points),
        each point (Unix seconds, value), NaN kept as NaN. Raises :class:`PrometheusError`
        when there is no answer or the answer is not a matrix."""
        params = {
            "query": query,
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "step": f"{step_seconds:g}",
        }
        data = self._get("query_range", params)
        if not isinstance(data, Mapping) or data.get("resultType") != "matrix":
            kind = data.get("resultType") if isinstance(data, Mapping) else None
            raise PrometheusError(f"the range query returned a {kind}; expected a matrix")
        try:
            return [
                (
                    {str(k): str(v) for k, v in r["metric"].items()},
                    [(float(t), float(v)) for t, v in r["values"]],
                )
                for r in data.get("result") or []
            ]
        except (TypeError, KeyError, IndexError, ValueError, AttributeError) as error:
            raise PrometheusError(f"unreadable Prometheus result: {error}") from error

    def _data(self, query: str, at: datetime | None) -> Any:
        params: dict[str, str] = {"query": query}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        return self._get("query", params)

    def _get(self, endpoint: str, params: dict[str, str]) -> Any:
        if not self.base_url:
            raise PrometheusError("no Prometheus URL is configured (EDGEOPS_PROMETHEUS_URL)")
        url = f"{self.base_url}/api/v1/{endpoint}"
        try:
            if self._client is not None:
                response = self._client.get(url, params=params, timeout=self.timeout)
            else:
                response = httpx.get(url, params=params, timeout=self.timeout)
        except httpx.HTTPError as error:
            raise PrometheusError(
                f"Prometheus unreachable: {type(error).__name__}: {error}"[:_MAX_ERROR]
            ) from error
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping):
            raise PrometheusError(
                f"Prometheus answered HTTP {response.status_code} without its JSON body"
            )
        if response.status_code != 200 or body.get("status") != "success":
            detail = f"{body.get('errorType', '')}: {body.get('error', '')}".strip(": ")
            raise PrometheusError(
                f"Prometheus answered HTTP {response.status_code}: {detail}"[:_MAX_ERROR]
            )
        return body.get("data")


def _one_value(data: Any) -> float | None:
    if not isinstance(data, Mapping):
        raise PrometheusError("Prometheus answered without data")
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "scalar":
            return float(result[1])  # type: ignore[index]
        if kind == "vector":
            if not result:
                return None
            if len(result) > 1:
                raise PrometheusError(
                    f"the query returned {len(result)} series; it must return one number "
                    "(aggregate it, e.g. with sum or avg)"
                )
            return float(result[0]["value"][1])
    except (TypeError, KeyError, IndexError, ValueError) as error:
        raise PrometheusError(f"unreadable Prometheus result: {error}") from error
    raise PrometheusError(f"the query returned a {kind}; it must return one number")


def measure(
    prometheus: Prometheus,
    metric: AnalysisMetric,
    context: QueryContext,
    interval: str,
    now: datetime,
) -> Measurement:
    """One measurement of ``metric`` at ``now`` (see the module docstring). Never raises
    for Prometheus failures: they become an Error measurement."""
    query = render(metric.query, context, "canary")
    try:
        samples = prometheus.value(samples_query(context, "canary", context.version, interval), now)
        canary = prometheus.value(query, now)
        stable: float | None = None
        if metric.baseline == "VsStable":
            stable_version = context.stable_version or context.version
            stable = prometheus.value(render(metric.query, context, "stable", stable_version), now)
    except PrometheusError as error:
        return Measurement(metric.name, query, None, 0, "Error", str(error), now)
    count = 0 if samples is None or math.isnan(samples) else int(samples)
    verdict, value, message = evaluate_value(metric, canary, stable, count)
    if value is not None and not math.isfinite(value):
        value = None  # status is JSON: NaN and infinities are shown as "no value"
    return Measurement(metric.name, query, value, count, verdict, message, now)


# --- drift monitor ------------------------------------------------------------------------


def feature_query(namespace: str, model: str, version: int, window_seconds: int) -> str:
    """Per-feature bin counts of one model version over the window, all cohorts and gateway
    replicas summed: one query for every feature of the model."""
    selector = f'namespace="{namespace}",model="{model}",version="{version}"'
    return (
        f"sum by (feature, bin) (increase({FEATURE_OBSERVATIONS_TOTAL}"
        f"{{{selector}}}[{window_seconds}s]))"
    )


def feedback_query(namespace: str, model: str, version: int, window_seconds: int) -> str:
    """Labelled feedback of one model version over the window, by outcome."""
    selector = f'namespace="{namespace}",model="{model}",version="{version}"'
    return f"sum by (outcome) (increase({FEEDBACK_TOTAL}{{{selector}}}[{window_seconds}s]))"


def fleet_counts(
    prometheus: Prometheus,
    namespace: str,
    model: str,
    version: int,
    window_seconds: int,
    now: datetime,
) -> FleetCounts:
    """The two drift queries at ``now`` as :class:`~edgeops.policy.drift.FleetCounts`.
    Never raises for Prometheus failures: they are the counts' ``error``."""
    try:
        bins = prometheus.vector(feature_query(namespace, model, version, window_seconds), now)
        outcomes = prometheus.vector(feedback_query(namespace, model, version, window_seconds), now)
    except PrometheusError as error:
        return FleetCounts(error=str(error))
    features: dict[str, dict[str, float]] = {}
    for labels, count in bins:
        if "feature" in labels and "bin" in labels:
            features.setdefault(labels["feature"], {})[labels["bin"]] = count
    feedback = {labels["outcome"]: count for labels, count in outcomes if "outcome" in labels}
    return FleetCounts(features, feedback)
