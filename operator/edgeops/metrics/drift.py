"""Drift measurements as operator metrics, so dashboards, alerts and ``edgeops report``
see drift over time (``status.drift`` holds only the last measurement).

Cardinality is bounded by models x features of the version each fleet runs: when a model's
measurement changes version or features, or the model goes away, its old series are
removed rather than left at their last value.
"""

from __future__ import annotations

import contextlib
import math
import threading
from datetime import datetime

from prometheus_client import Gauge

from edgeops.api.edgemodel import DriftSummary
from edgeops.metrics.operator import (
    MODEL_DRIFT_DETECTED,
    MODEL_DRIFT_MEASURED,
    MODEL_DRIFT_STATISTIC,
    MODEL_DRIFT_THRESHOLD,
)

#: Label values per model: (version, feature, method) of the feature series it has now.
_published: dict[tuple[str, str], set[tuple[str, str, str]]] = {}
_lock = threading.Lock()

_VERDICT_VALUE = {"Drift": 1.0, "NoDrift": 0.0}


def publish(namespace: str, model: str, summary: DriftSummary | None) -> None:
    """Sets the model's drift series from its ``status.drift`` (None: the model has no
    drift monitoring any more, or was deleted: every series of the model is removed).

    Idempotent, so calling it on every reconcile also re-exports after an operator restart.
    Features without a statistic (Inconclusive) have no series; a verdict other than Drift
    or NoDrift removes ``edgeops_model_drift_detected`` for that type.
    """
    key = (namespace, model)
    with _lock:
        wanted: dict[tuple[str, str, str], tuple[float, float | None]] = {}
        if summary is not None and summary.version is not None:
            for entry in summary.features:
                if entry.statistic is None or not math.isfinite(entry.statistic):
                    continue
                labels = (str(summary.version), entry.feature, str(entry.method))
                wanted[labels] = (entry.statistic, entry.threshold)
        for labels in _published.get(key, set()) - set(wanted):
            MODEL_DRIFT_STATISTIC.remove(namespace, model, *labels)
            MODEL_DRIFT_THRESHOLD.remove(namespace, model, *labels)
        for labels, (statistic, threshold) in wanted.items():
            MODEL_DRIFT_STATISTIC.labels(namespace, model, *labels).set(statistic)
            if threshold is not None:
                MODEL_DRIFT_THRESHOLD.labels(namespace, model, *labels).set(threshold)
            else:
                _remove(MODEL_DRIFT_THRESHOLD, namespace, model, *labels)
        if wanted:
            _published[key] = set(wanted)
        else:
            _published.pop(key, None)
        verdicts = {
            "data": summary.verdict if summary else None,
            "concept": summary.concept_verdict if summary else None,
        }
        for kind, verdict in verdicts.items():
            value = _VERDICT_VALUE.get(str(verdict)) if verdict is not None else None
            if value is None:
                _remove(MODEL_DRIFT_DETECTED, namespace, model, kind)
            else:
                MODEL_DRIFT_DETECTED.labels(namespace, model, kind).set(value)
        if summary is not None and summary.measured_at is not None:
            MODEL_DRIFT_MEASURED.labels(namespace, model).set(
                datetime.fromisoformat(summary.measured_at).timestamp()
            )
        else:
            _remove(MODEL_DRIFT_MEASURED, namespace, model)


def _remove(gauge: Gauge, *labels: str) -> None:
    # prometheus-client raises KeyError for label values it never saw.
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
