"""The operator's own Prometheus metrics, served on its /metrics endpoint.

Names follow the Prometheus conventions (base units in the name, ``_total`` for counters,
which prometheus-client appends) and the labels controller-runtime operators use, so
existing dashboards and alerts carry over: reconcile duration and errors by kind, objects
by kind and phase, build information.
"""

from __future__ import annotations

import platform

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

from edgeops import __version__

RECONCILIATIONS = Counter(
    "edgeops_operator_reconciliations",
    "Reconciliations handled by the operator, by kind and outcome (success, requeued, error, "
    "or a decision such as job-created).",
    ["kind", "outcome"],
)
RECONCILE_DURATION = Histogram(
    "edgeops_operator_reconcile_duration_seconds",
    "Wall time of one reconciliation of one object, status write included, by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
RECONCILE_ERRORS = Counter(
    "edgeops_operator_reconcile_errors",
    "Reconciliations that failed and were retried with backoff, by kind and error class.",
    ["kind", "error"],
)
OBJECTS = Gauge(
    "edgeops_operator_objects",
    "EdgeOps objects the operator watches, by kind and phase (or Ready condition status "
    "for kinds without a phase).",
    ["kind", "phase"],
)
OPERATOR_UP = Gauge("edgeops_operator_up", "1 while the operator's event loop is running.")
BUILD_INFO = Info("edgeops_operator_build", "Version of the running operator.")
BUILD_INFO.info({"version": __version__, "python_version": platform.python_version()})


def serve(port: int, address: str = "127.0.0.1") -> None:
    """Starts the /metrics endpoint in a background thread."""
    start_http_server(port, addr=address)


MODEL_DRIFT_DETECTED = Gauge(
    "edgeops_model_drift_detected",
    "1 while the last drift measurement of a model's fleet version says Drift, 0 while it "
    "says NoDrift, by type (data, concept); absent while Inconclusive, failed or not measured.",
    ["namespace", "model", "type"],
)
MODEL_DRIFT_STATISTIC = Gauge(
    "edgeops_model_drift_statistic",
    "The last measured drift statistic of one feature of a model's fleet version (the "
    "method's own scale: PSI, Jensen-Shannon distance, KS or Wasserstein distance).",
    ["namespace", "model", "version", "feature", "method"],
)
MODEL_DRIFT_THRESHOLD = Gauge(
    "edgeops_model_drift_threshold",
    "The threshold the feature's last drift statistic was compared with (calibrated for the "
    "window's sample count, or the fixed one the spec sets).",
    ["namespace", "model", "version", "feature", "method"],
)
MODEL_DRIFT_MEASURED = Gauge(
    "edgeops_model_drift_last_measurement_timestamp_seconds",
    "Unix time of the last drift measurement of a model's fleet version.",
    ["namespace", "model"],
)
