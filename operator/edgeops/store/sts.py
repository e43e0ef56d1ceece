"""Scoped, short-lived S3 credentials for pods, from the STS ``AssumeRole`` API.

The operator's own keys never leave its namespace. A training pod or a KServe predictor
gets temporary credentials instead: the operator calls ``AssumeRole`` with its own keys and
an inline *session policy*, and the temporary credentials may do only what both the
operator's permissions and that session policy allow, until they expire.

Sources:
- AWS STS ``AssumeRole`` (``DurationSeconds`` 900 s up to the role's maximum, ``Policy`` an
  inline session policy of at most 2048 packed characters):
  https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
- Session policies intersect with the caller's permissions:
  https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session
- MinIO's STS ``AssumeRole`` (served on the S3 endpoint; ``RoleArn`` ignored; the session
  policy is evaluated for users and for the root user alike; 900 s to 365 days):
  https://min.io/docs/minio/linux/developers/security-token-service/AssumeRole.html
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from minio.credentials.providers import AssumeRoleProvider

from .artifacts import _http_client  # one TLS and timeout policy for every S3 call
from .config import StoreConfig
from .errors import StorageRejectedError, StorageUnavailableError
from .retry import DEFAULT_BACKOFF, Backoff, with_retries

#: Bounds of ``DurationSeconds`` that both AWS and MinIO accept (AWS's upper bound is the
#: role's MaxSessionDuration, at most 12 h; MinIO's is 365 days).
MIN_DURATION_SECONDS: Final = 900
# (minio's AssumeRoleProvider itself raises anything below 3600 s to 3600 s.)
#: ``AssumeRole`` refuses a session policy longer than this (packed JSON).
MAX_POLICY_CHARS: Final = 2048
_STATUS = re.compile(r"HTTP status code (\d{3})")


@dataclass(frozen=True)
class ScopedCredentials:
    """Temporary S3 credentials: access key, secret key and session token (the last two
    never in the repr), valid until ``expires`` (UTC)."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expires: datetime


def assume_role(
    config: StoreConfig,
    policy: Mapping[str, Any],
    duration_seconds: int,
    *,
    sts_endpoint: str | None = None,
    role_arn: str | None = None,
    session_name: str | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> ScopedCredentials:
    """Temporary credentials for ``config``'s keys, limited by the session ``policy`` (an
    IAM policy document, e.g. from :mod:`edgeops.policy.credentials`), valid for
    ``duration_seconds`` (900 or more).

    ``sts_endpoint`` defaults to the S3 endpoint (MinIO); ``role_arn`` is required by AWS
    and ignored by MinIO; ``session_name`` (2-64 of ``[\\w+=,.@-]``) shows in audit logs.

    Raises:
        ValueError: the duration is below 900 s or the policy is longer than 2048 chars.
        StorageUnavailableError: STS could not be reached (after retries) or answered 5xx.
        StorageRejectedError: STS refused (code ``AccessDenied`` for 401/403: the keys may
            not assume roles, e.g. they are themselves temporary; ``STSRequestRefused``
            otherwise, e.g. a duration above the role's maximum).
    """
    if duration_seconds < MIN_DURATION_SECONDS:
        raise ValueError(f"STS credentials live {MIN_DURATION_SECONDS} s or more")
    packed = json.dumps(policy, separators=(",", ":"), sort_keys=True)
    if len(packed) > MAX_POLICY_CHARS:
        raise ValueError(f"session policy is {len(packed)} chars, over {MAX_POLICY_CHARS}")
    provider = AssumeRoleProvider(
        sts_endpoint=sts_endpoint or config.endpoint,
        access_key=config.access_key,
        secret_key=config.secret_key,
        duration_seconds=duration_seconds,
        policy=packed,
        region=config.region or "us-east-1",
        role_arn=role_arn,
        role_session_name=session_name,
        http_client=_http_client(config),
    )
    try:
        issued = with_retries(provider.retrieve, "STS AssumeRole", backoff)
    except ValueError as error:  # minio raises ValueError("... HTTP status code N")
        match = _STATUS.search(str(error))
        status = int(match.group(1)) if match else 0
        if status >= 500:
            raise StorageUnavailableError(f"STS AssumeRole: server error {status}") from None
        code = "AccessDenied" if status in (401, 403) else "STSRequestRefused"
        raise StorageRejectedError(
            code, f"S3 refused: STS AssumeRole answered HTTP {status or 'error'} ({code})"
        ) from None
    expires = issued.expiration or datetime.now(UTC)
    return ScopedCredentials(
        access_key=issued.access_key,
        secret_key=issued.secret_key,
        session_token=issued.session_token or "",
        expires=expires if expires.tzinfo else expires.replace(tzinfo=UTC),
    )
