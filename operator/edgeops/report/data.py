"""What a report shows, gathered once (:mod:`edgeops.report.gather`) and rendered without
further I/O (:mod:`edgeops.report.charts`, :mod:`edgeops.report.page`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: One time series: (Unix seconds, value) points in time order.
Points = list[tuple[float, float]]


@dataclass(frozen=True)
class FeatureHistory:
    """One feature's drift statistic and threshold over time, for one model version."""

    feature: str
    version: str
    method: str
    statistic: Points
    threshold: Points


@dataclass(frozen=True)
class Curve:
    """A labelled series, e.g. inferences per second of one version."""

    label: str
    points: Points


@dataclass
class ReportData:
    """Everything one report shows.

    ``model``: the EdgeModel object as the API server returns it; ``rollouts``, ``runs`` and
    ``events``: FleetRollouts, TrainingRuns and core/v1 Events of the model (newest first
    for events); ``lineage``: rows of :func:`edgeops.policy.registry.lineage`;
    ``drift_history``/``traffic``: Prometheus range-query results over ``since_seconds``
    before ``generated_at``; ``problems``: what could not be read, in words (the report is
    still written, showing what it has)."""

    namespace: str
    name: str
    generated_at: datetime
    since_seconds: float
    model: dict[str, Any]
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    drift_history: list[FeatureHistory] = field(default_factory=list)
    traffic: list[Curve] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def status(self) -> dict[str, Any]:
        """The model's status (empty before its controller first wrote it)."""
        return dict(self.model.get("status") or {})
