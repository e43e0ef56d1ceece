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
#: 1 while an EdgeModel's DataDrift (type="data") or ConceptDrift (type="concept") condition
#: is True, else 0; one series per model and type (removed with the model), so alerts and
#: dashboards see what the drift monitor decided without parsing status.
DRIFT_DETECTED = Gauge(
    "edgeops_model_drift_detected",
    "1 while the EdgeModel's DataDrift (type=data) or ConceptDrift (type=concept) condition "
    "is True.",
    ["namespace", "model", "type"],
)
#: The last measured PSI per feature (status.drift.perFeaturePsi; at most 256 features per
#: model, the API's bound), for the dashboard's drift-per-feature panel.
FEATURE_DRIFT_PSI = Gauge(
    "edgeops_model_feature_drift_psi",
    "Population stability index of the feature in the EdgeModel's last drift measurement.",
    ["namespace", "model", "feature"],
)
OPERATOR_UP = Gauge("edgeops_operator_up", "1 while the operator's event loop is running.")
BUILD_INFO = Info("edgeops_operator_build", "Version of the running operator.")
BUILD_INFO.info({"version": __version__, "python_version": platform.python_version()})


def serve(port: int, address: str = "127.0.0.1") -> None:
    """Starts the /metrics endpoint in a background thread."""
    start_http_server(port, addr=address)
