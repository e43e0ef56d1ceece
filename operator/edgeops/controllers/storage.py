"""The operator's one ArtifactStore, configured from the settings (``EDGEOPS_S3_*``) and
(optionally) a credentials Secret named by EDGEOPS_S3_SECRET ("name" in the operator's
namespace, or "namespace/name")."""

from __future__ import annotations

import threading

from edgeops.api.constants import Reason
from edgeops.k8s import client as k8s
from edgeops.settings import settings
from edgeops.store import (
    ArtifactStore,
    StorageMisconfiguredError,
    StorageRejectedError,
    StorageUnavailableError,
    StoreConfig,
    StoreError,
)

#: Kubernetes API answers that mean the Secret cannot be used as configured.
_MISCONFIGURED_STATUSES = {
    401: "is not readable (401 Unauthorized)",
    403: "is not readable by the operator (403 Forbidden)",
    404: "does not exist",
}

_lock = threading.Lock()
_store: ArtifactStore | None = None


def artifact_store() -> ArtifactStore:
    """Built on first use, so the operator starts (and reports StorageAvailable=False)
    even when S3 is misconfigured or down.

    Raises StorageMisconfiguredError when the settings or the credentials Secret are
    missing or invalid (the message names what, never a secret value), and
    StorageUnavailableError when the Secret cannot be read right now."""
    global _store
    with _lock:
        if _store is None:
            config = settings()
            ref = config.s3_secret_ref
            secret = _read_secret(*ref) if ref else None
            shown = "/".join(ref) if ref else ""
            try:
                _store = ArtifactStore(StoreConfig.from_settings(config, secret))
            except ValueError as error:
                where = f" (credentials Secret {shown}, EDGEOPS_S3_SECRET)" if shown else ""
                raise StorageMisconfiguredError(f"{error}{where}") from None
        return _store


def credentials_origin() -> str:
    """Where the store's credentials come from, for messages that ask to check them."""
    ref = settings().s3_secret_ref
    if ref:
        return f"Secret {'/'.join(ref)} (keys accessKey, secretKey)"
    return "EDGEOPS_S3_ACCESS_KEY / EDGEOPS_S3_SECRET_KEY"


def forget_store() -> None:
    """Drops the built store, so the next use reads the credentials Secret again (after S3
    refused the credentials, a fixed Secret then takes effect)."""
    global _store
    with _lock:
        _store = None


def _read_secret(namespace: str, name: str) -> dict[str, str]:
    try:
        return k8s.read_secret(namespace, name)
    except UnicodeDecodeError:
        raise StorageMisconfiguredError(
            f"credentials Secret {namespace}/{name} (EDGEOPS_S3_SECRET) holds a value that is "
            "not UTF-8 text"
        ) from None
    except Exception as error:  # kubernetes ApiException (by status), or the API is down
        status = getattr(error, "status", None)
        if isinstance(status, int) and status in _MISCONFIGURED_STATUSES:
            raise StorageMisconfiguredError(
                f"credentials Secret {namespace}/{name} (EDGEOPS_S3_SECRET) "
                f"{_MISCONFIGURED_STATUSES[status]}"
            ) from None
        raise StorageUnavailableError(
            f"cannot read credentials Secret {namespace}/{name}: {type(error).__name__}"
            + (f" (HTTP {status})" if status else "")
        ) from None


def describe_store_error(error: StoreError) -> tuple[str, str]:
    """The StorageAvailable=False reason and message for a store error, saying what to fix.
    A refusal of the credentials drops the cached store, so a corrected Secret is read on
    the next attempt."""
    if isinstance(error, StorageMisconfiguredError):
        return Reason.STORAGE_MISCONFIGURED, f"S3 store misconfigured: {error}"
    if isinstance(error, StorageRejectedError):
        if error.credentials:
            forget_store()
            hint = f"check the S3 credentials in {credentials_origin()} and their permissions"
        elif error.code == "NoSuchBucket":
            hint = "check the bucket name (EDGEOPS_S3_BUCKET, or the s3 source's bucket)"
        else:
            hint = "S3 will refuse this again until it is fixed"
        return Reason.STORAGE_REJECTED, f"{error}; {hint}"
    return Reason.STORAGE_UNAVAILABLE, str(error)
