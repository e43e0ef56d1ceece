"""Where the store is and how to reach it: operator configuration plus a credentials Secret.

Endpoint, bucket and TLS settings come from the operator's environment; credentials from
the environment or a Secret (keys accessKey, secretKey and optionally endpoint), whose data
the caller reads (this package does not talk to Kubernetes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_BUCKET = "edgeops"


@dataclass(frozen=True)
class StoreConfig:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str = DEFAULT_BUCKET
    region: str | None = None
    #: PEM bundle to verify the server certificate with (private CAs).
    ca_bundle: str | None = None
    #: Development only: accept any server certificate.
    insecure_skip_verify: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"S3 endpoint must be http(s)://host[:port], not {_redacted(self.endpoint)!r}"
            )

    @property
    def secure(self) -> bool:
        return urlsplit(self.endpoint).scheme == "https"

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], secret_data: Mapping[str, str] | None = None
    ) -> StoreConfig:
        """Settings from ``EDGEOPS_S3_*`` variables; a Secret's values fill in credentials
        (and the endpoint when the environment has none). ``secret_data`` holds the
        Secret's decoded values."""
        secret = dict(secret_data or {})
        endpoint = env.get("EDGEOPS_S3_ENDPOINT") or secret.get("endpoint")
        access = secret.get("accessKey") or env.get("EDGEOPS_S3_ACCESS_KEY")
        secret_key = secret.get("secretKey") or env.get("EDGEOPS_S3_SECRET_KEY")
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
            bucket=env.get("EDGEOPS_S3_BUCKET") or DEFAULT_BUCKET,
            region=env.get("EDGEOPS_S3_REGION") or None,
            ca_bundle=env.get("EDGEOPS_S3_CA_BUNDLE") or None,
            insecure_skip_verify=env.get("EDGEOPS_S3_INSECURE_SKIP_VERIFY", "") == "true",
        )


def _redacted(endpoint: str) -> str:
    """The endpoint without what may be credentials: user:password@ and a query."""
    shown = endpoint.split("?", 1)[0].split("#", 1)[0]
    scheme, separator, rest = shown.rpartition("://")
    if "@" in rest:
        return f"{scheme}{separator}***@{rest.rpartition('@')[2]}"
    return shown
