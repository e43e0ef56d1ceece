"""Where the store is and how to reach it: operator configuration plus a credentials Secret.

Endpoint, bucket and TLS settings come from the operator's settings (``edgeops.settings``,
the ``EDGEOPS_S3_*`` variables); credentials from the settings or a Secret (keys accessKey,
secretKey and optionally endpoint), whose data the caller reads (this package does not talk
to Kubernetes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pydantic import SecretStr

from edgeops.settings import OperatorSettings, redacted_url

DEFAULT_BUCKET = "edgeops"


@dataclass(frozen=True)
class StoreConfig:
    """How to reach the store: endpoint, credentials (never in the repr), bucket, TLS."""

    endpoint: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    bucket: str = DEFAULT_BUCKET
    region: str | None = None
    #: PEM bundle to verify the server certificate with (private CAs).
    ca_bundle: str | None = None
    #: Development only: accept any server certificate.
    insecure_skip_verify: bool = False
    #: Session token of temporary (STS) credentials; None for long-lived keys.
    session_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"S3 endpoint must be http(s)://host[:port], not {redacted_url(self.endpoint)!r}"
            )

    @property
    def secure(self) -> bool:
        return urlsplit(self.endpoint).scheme == "https"

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc

    @classmethod
    def from_settings(
        cls,
        settings: OperatorSettings,
        secret_data: Mapping[str, str] | None = None,
        session_token: SecretStr | None = None,
    ) -> StoreConfig:
        """The store of ``settings`` (the ``EDGEOPS_S3_*`` variables); a credentials Secret's
        values fill in credentials (and the endpoint when the settings have none).
        ``secret_data`` holds the Secret's decoded values; ``session_token`` makes the keys
        temporary credentials (a training pod's, from ``TrainerSettings``).

        Raises:
            ValueError: the endpoint or a credential is missing, or the endpoint is not an
                http(s) URL (the message names what, never a secret value).
        """
        secret = dict(secret_data or {})
        endpoint = settings.s3_endpoint or secret.get("endpoint")
        access = secret.get("accessKey") or _revealed(settings.s3_access_key)
        secret_key = secret.get("secretKey") or _revealed(settings.s3_secret_key)
        missing = [
            name
            for name, value in (
                ("endpoint (EDGEOPS_S3_ENDPOINT)", endpoint),
                ("access key (EDGEOPS_S3_ACCESS_KEY or Secret accessKey)", access),
                ("secret key (EDGEOPS_S3_SECRET_KEY or Secret secretKey)", secret_key),
            )
            if not value
        ]
        if missing:
            raise ValueError("S3 store is not configured: missing " + ", ".join(missing))
        assert endpoint and access and secret_key  # narrowed by the check above
        return cls(
            endpoint=endpoint,
            access_key=access,
            secret_key=secret_key,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            ca_bundle=str(settings.s3_ca_bundle) if settings.s3_ca_bundle else None,
            insecure_skip_verify=settings.s3_insecure_skip_verify,
            session_token=_revealed(session_token),
        )


def _revealed(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
