"""Store errors callers can act on, independent of the S3 client library."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by edgeops.store."""


class StorageUnavailableError(StoreError):
    """S3 could not be reached (or kept failing) after retries; nothing was lost."""


class ObjectMissingError(StoreError):
    """The object does not exist."""


class IntegrityError(StoreError):
    """An object's content does not match the SHA-256 it is addressed by."""
