"""Running the gateway: uvicorn serving :func:`edgeops.gateway.app.create_app` with the S3
store built from the operator's ``EDGEOPS_S3_*`` settings. Used by ``edgeops gateway run``
and ``python -m edgeops.gateway`` (the image's entrypoint)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection
from typing import Any, Final

import uvicorn

from edgeops.gateway.app import create_app
from edgeops.k8s.client import read_secret
from edgeops.redaction import install_log_redaction
from edgeops.settings import GatewaySettings, OperatorSettings
from edgeops.store import ArtifactStore, StoreConfig

#: How uvicorn serves the gateway (besides host and port); ``benchmarks/gateway.py`` serves
#: its bare baseline endpoint with the same options, so the ratio measures the app only.
UVICORN_OPTIONS: Final[dict[str, Any]] = {
    "log_level": "info",
    # Devices are identified by their signatures, never by addresses a proxy reports (and
    # the failed-enrollment budget is per TCP peer, which a client cannot choose).
    "proxy_headers": False,
}


def serve(
    config: GatewaySettings,
    operator_config: OperatorSettings,
    *,
    port: int | None = None,
    bind_address: str | None = None,
    namespaces: Collection[str] = (),
) -> None:
    """Serves until interrupted. S3 credentials come from ``EDGEOPS_S3_ACCESS_KEY`` and
    ``EDGEOPS_S3_SECRET_KEY`` or, when ``EDGEOPS_S3_SECRET`` names one, that Secret (read on
    first use, so the gateway starts while S3 is down). ``namespaces``: the ones served
    (empty: the whole cluster)."""

    @functools.cache
    def store() -> ArtifactStore:
        ref = operator_config.s3_secret_ref
        secret = read_secret(*ref) if ref else None
        return ArtifactStore(StoreConfig.from_settings(operator_config, secret))

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_log_redaction()
    uvicorn.run(
        create_app(config, store, namespaces=namespaces),
        host=bind_address or config.gateway_bind_address,
        port=port or config.gateway_port,
        **UVICORN_OPTIONS,
    )
