"""Starting the Kopf operator with settings fit for a long-running production controller.

The tunable ones (watch and request timeouts, ports, bind address) come from
:mod:`edgeops.settings`; the rest are fixed here with the reason next to them."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

import kopf

from edgeops.controllers import admission, events
from edgeops.metrics import operator as operator_metrics
from edgeops.redaction import install_log_redaction
from edgeops.settings import settings as edgeops_settings

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


#: Largest copy of an object Kopf may keep in its last-handled-configuration annotation
#: (compact JSON, non-ASCII escaped, bytes). All annotations of an object share 256 KiB
#: and kubectl apply keeps another copy of the spec in last-applied-configuration.
MAX_DIFFBASE_BYTES = 128 * 1024


class BoundedDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """Kopf's annotation diff-base, skipped for an object too big for it. Written anyway,
    it fails every Kopf patch of the object with 422 "Too long", including the removal of
    its finalizer: the object could never be deleted. Only the Dataset's deletion handler
    is a change-detecting Kopf handler here (reconciliation is a daemon, which needs no
    diff-base), and deletion does not diff: nothing is lost by not storing it. The spec
    models refuse such a spec (``edgeops.api.common.MAX_SPEC_BYTES``); this covers objects
    stored while the webhook was down, and big labels or annotations."""

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Stores ``essence`` unless it is over :data:`MAX_DIFFBASE_BYTES` (then logs why)."""
        size = len(json.dumps(essence, separators=(",", ":")))
        if size > MAX_DIFFBASE_BYTES:
            log.warning(
                "%s/%s: not storing Kopf's last-handled-configuration: %d bytes, more than %d",
                body.metadata.namespace,
                body.metadata.name,
                size,
                MAX_DIFFBASE_BYTES,
            )
            return
        super().store(body=body, patch=patch, essence=essence)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Kopf's settings for this operator, from :func:`edgeops.settings.settings`."""
    config = edgeops_settings()
    # A watch stream can go silent without closing (proxies, apiserver restarts): make the
    # server end it and the client give up on it, so the watch is re-established. Kopf sends
    # the server timeout as the text of the value: it must be a whole number of seconds.
    settings.watching.server_timeout = config.watch_server_timeout_seconds
    settings.watching.client_timeout = config.watch_client_timeout_seconds
    settings.watching.connect_timeout = config.watch_connect_timeout_seconds
    settings.networking.request_timeout = config.api_request_timeout_seconds
    # kopf.info() is dropped below the posting level, so it stays at INFO; Kopf's own
    # bookkeeping lines are filtered out instead (see _KopfBookkeeping).
    settings.posting.level = logging.INFO
    # Status and progress go under our own annotation prefix, not kopf's default one.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="kopf.edgeops.dev"
    )
    settings.persistence.diffbase_storage = BoundedDiffBaseStorage(
        prefix="kopf.edgeops.dev", key="last-handled-configuration"
    )
    # Events through the API, repeats counted on one Event (controllers.events).
    events.enable()
    admission.configure(settings)
    operator_metrics.OPERATOR_UP.set(1)


@kopf.on.cleanup()
def on_cleanup(**_: Any) -> None:
    operator_metrics.OPERATOR_UP.set(0)


def run(
    health_port: int | None = None,
    metrics_port: int | None = None,
    peering: bool = False,
    namespaces: Sequence[str] = (),
    bind_address: str | None = None,
) -> None:
    """Runs the operator until interrupted. Ports and bind address left as None come from
    the settings (``EDGEOPS_HEALTH_PORT``, ``EDGEOPS_METRICS_PORT``,
    ``EDGEOPS_BIND_ADDRESS``).

    ``namespaces``: the namespaces to serve (Kopf watches each), to which the operator's own
    (``EDGEOPS_NAMESPACE``) is added because its evaluation Jobs run there; empty: the
    whole cluster. Serving namespaces needs no cluster-wide permission on namespaced
    resources (the chart's ``watchNamespaces``).

    Peering (Kopf's coordination of several operator replicas) is off by default: the local
    and single-replica case needs no peering CRDs. Enable it for HA deployments.

    Raises:
        edgeops.settings.SettingsError: a setting has a bad value.
    """
    import edgeops.controllers as controllers  # handlers register on import

    # Before anything logs: no line (ours, Kopf's, httpx's, urllib3's, minio's) shows a
    # URL's credentials or a presigned signature.
    install_log_redaction()
    config = edgeops_settings()
    health_port = config.health_port if health_port is None else health_port
    metrics_port = config.metrics_port if metrics_port is None else metrics_port
    bind_address = config.bind_address if bind_address is None else bind_address
    log.info("starting EdgeOps operator (handlers from %s)", controllers.__name__)
    operator_metrics.serve(metrics_port, bind_address)
    asyncio.run(
        kopf.operator(
            standalone=not peering,
            clusterwide=not namespaces,
            namespaces=list(dict.fromkeys([*namespaces, config.namespace])) if namespaces else [],
            liveness_endpoint=f"http://{_url_host(bind_address)}:{health_port}/healthz",
        )
    )


def _url_host(address: str) -> str:
    """``address`` as the host part of a URL (an IPv6 address in brackets)."""
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:  # a host name
        return address
