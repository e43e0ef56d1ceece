"""The operator's own Prometheus metrics, served on its /metrics endpoint."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

RECONCILIATIONS = Counter(
    "edgeops_operator_reconciliations",
    "Reconciliations handled by the operator, by kind and outcome.",
    ["kind", "outcome"],
)
OPERATOR_UP = Gauge("edgeops_operator_up", "1 while the operator's event loop is running.")


def serve(port: int, address: str = "127.0.0.1") -> None:
    """Starts the /metrics endpoint in a background thread."""
    start_http_server(port, addr=address)
