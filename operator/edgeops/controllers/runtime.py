"""Starting the Kopf operator with settings fit for a long-running production controller."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import kopf

from edgeops.metrics import operator as operator_metrics

log = logging.getLogger("edgeops.operator")


class _KopfBookkeeping(logging.Filter):
    """Drops Kopf's per-handler success lines ("Timer 'track' succeeded.", "Creation is
    processed: ...") from the per-object log. At the INFO posting level each would become a
    Kubernetes Event, and timers tick every few seconds per object. Decisions are posted
    explicitly (kopf.info/warn) with the numbers behind them."""

    _PATTERN = re.compile(
        r"^((Timer|Handler|Daemon) '[^']+' succeeded\.|[A-Z][a-z]+ is processed: .*)$"
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not self._PATTERN.match(record.getMessage())


logging.getLogger("kopf.objects").addFilter(_KopfBookkeeping())


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # A watch stream can go silent without closing (proxies, apiserver restarts): make the
    # server end it and the client give up on it, so the watch is re-established.
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    # kopf.info() is dropped below the posting level, so it stays at INFO; Kopf's own
    # bookkeeping lines are filtered out instead (see _KopfBookkeeping).
    settings.posting.level = logging.INFO
    # Status and progress go under our own annotation prefix, not kopf's default one.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="kopf.edgeops.dev"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopf.edgeops.dev", key="last-handled-configuration"
    )
    operator_metrics.OPERATOR_UP.set(1)


@kopf.on.cleanup()
def on_cleanup(**_: Any) -> None:
    operator_metrics.OPERATOR_UP.set(0)


def run(
    health_port: int = 8080,
    metrics_port: int = 9090,
    peering: bool = False,
    namespace: str | None = None,
    bind_address: str = "127.0.0.1",
) -> None:
    """Runs the operator until interrupted.

    Peering (Kopf's coordination of several operator replicas) is off by default: the local
    and single-replica case needs no peering CRDs. Enable it for HA deployments.
    """
    import edgeops.controllers as controllers  # handlers register on import

    log.info("starting EdgeOps operator (handlers from %s)", controllers.__name__)
    operator_metrics.serve(metrics_port, bind_address)
    asyncio.run(
        kopf.operator(
            standalone=not peering,
            clusterwide=namespace is None,
            namespaces=[namespace] if namespace else [],
            liveness_endpoint=f"http://{bind_address}:{health_port}/healthz",
        )
    )
