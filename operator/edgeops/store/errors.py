"""Store errors callers can act on, independent of the S3 client library."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by edgeops.store."""


class StorageUnavailableError(StoreError):
    """S3 could not be reached (or kept failing) after retries; nothing was lost."""


class StorageMisconfiguredError(StoreError):
    """The store cannot be used as configured (endpoint, credentials, their Secret).
    Retrying does not help until the configuration is fixed."""


class StorageRejectedError(StoreError):
    """S3 answered but refused the request for a reason retrying does not fix: bad or
    insufficient credentials (InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied), a
    missing bucket (NoSuchBucket), and every other non-transient S3 error code."""

    #: Credentials are wrong or lack permissions (rather than e.g. a missing bucket).
    CREDENTIAL_CODES = frozenset(
        {
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "InvalidToken",
            "InvalidSecurity",
            "AllAccessDisabled",
            "AccountProblem",
        }
    )

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def credentials(self) -> bool:
        return self.code in self.CREDENTIAL_CODES


class ObjectMissingError(StoreError):
    """The object does not exist."""


class IntegrityError(StoreError):
    """An object's content does not match the SHA-256 it is addressed by."""
