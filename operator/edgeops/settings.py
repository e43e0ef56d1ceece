"""The operator's configuration: one pydantic-settings object read from ``EDGEOPS_*``
environment variables (the Helm chart sets them from its values).

Read once per process through :func:`settings`; tests that change the environment call
``settings.cache_clear()``.
"""

from __future__ import annotations

import functools

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Every knob of the operator, each with its unit and why its default was chosen."""

    model_config = SettingsConfigDict(env_prefix="EDGEOPS_", extra="ignore", frozen=True)

    namespace: str = Field(
        "edgeops-system",
        description="Namespace the operator runs in: its signing key Secret, public-key "
        "ConfigMap and (by default) the S3 credentials Secret live there.",
    )
    resync_interval_seconds: float = Field(
        60.0,
        gt=0,
        description="Seconds between periodic re-reconciliations of an object while nothing "
        "changes. Reconciliation is event-driven; this only bounds how long a missed event "
        "(or a change outside Kubernetes, e.g. in S3) can go unnoticed.",
    )
    source_poll_interval_seconds: float = Field(
        10.0,
        gt=0,
        description="Seconds between looks for new objects in the sources of a Dataset with "
        "collection.onNewObjects (S3 and HTTP have no watch). Each look is one listing "
        "of the sources, never an API-server call.",
    )
    s3_job_endpoint: str | None = Field(
        None,
        description="S3 endpoint as seen from training and ingestion pods, when it differs "
        "from the operator's own (e.g. an in-cluster Service name). Default: the operator's.",
    )


@functools.cache
def settings() -> OperatorSettings:
    """The process's settings, read from the environment on first use.

    Raises:
        pydantic.ValidationError: a variable has a value of the wrong type or out of range
            (the message names the variable).
    """
    return OperatorSettings()
