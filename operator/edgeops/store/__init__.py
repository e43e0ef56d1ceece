"""The artifact store: content-addressed objects in S3 with atomic, manifest-last publish.

This package is the only place that imports ``minio``; everything else talks to
:class:`ArtifactStore`.
"""

from __future__ import annotations

from .artifacts import ArtifactStore, BlobRef, blob_key
from .config import StoreConfig
from .errors import (
    IntegrityError,
    ObjectMissingError,
    StorageMisconfiguredError,
    StorageRejectedError,
    StorageUnavailableError,
    StoreError,
)
from .sts import ScopedCredentials, assume_role

__all__ = [
    "ArtifactStore",
    "BlobRef",
    "IntegrityError",
    "ObjectMissingError",
    "ScopedCredentials",
    "StorageMisconfiguredError",
    "StorageRejectedError",
    "StorageUnavailableError",
    "StoreConfig",
    "StoreError",
    "assume_role",
    "blob_key",
]
