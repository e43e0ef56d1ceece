"""Issue 17: content-addressed blobs are write-once, on the devcluster's real MinIO.

A later writer never replaces a blob whose bytes hash to its key: the store writes with
``If-None-Match: *`` (MinIO refuses with 412 when the key exists), keeps an existing
correct blob untouched, and replaces only an object whose bytes do not hash to the key
(``If-Match`` on exactly that object's ETag)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import httpx
import pytest
from minio import Minio

from edgeops.store import ArtifactStore
from edgeops.store.artifacts import BlobRef
from tests.conftest import Cluster

pytestmark = pytest.mark.integration


def _raw(cluster: Cluster) -> Minio:
    """A plain S3 client with the operator's keys: a writer that does not play by the
    store's rules."""
    config = cluster.store_config()
    return Minio(config.host, config.access_key, config.secret_key, secure=config.secure)


def test_an_existing_blob_is_never_replaced(cluster: Cluster) -> None:
    store = cluster.store()
    data = b"write once " + os.urandom(16)
    ref = store.put_blob(data)
    before = store.stat(ref.key)
    assert before is not None

    # MinIO itself refuses a conditional overwrite with other bytes.
    url = store.presigned_put(ref.key)
    refused = httpx.put(url, content=b"other bytes", headers={"If-None-Match": "*"}, timeout=10)
    assert refused.status_code == 412, refused.text
    assert store.get_blob(ref.sha256) == data

    # A second writer that raced past the existence check (both saw no blob) writes
    # conditionally, finds the right bytes there and leaves them as they are.
    racer = ArtifactStore(cluster.store_config())
    racer._has_blob = lambda _ref: False  # type: ignore[method-assign]
    assert racer.put_blob(data) == ref
    after = store.stat(ref.key)
    assert after is not None and (after.etag, after.last_modified) == (
        before.etag,
        before.last_modified,
    )


def test_a_torn_or_tampered_blob_is_replaced_and_only_it(cluster: Cluster, tmp_path: Path) -> None:
    store, raw = cluster.store(), _raw(cluster)
    data = b"the right bytes " + os.urandom(16)
    ref = BlobRef(hashlib.sha256(data).hexdigest(), len(data))
    raw.put_object(store.bucket, ref.key, io.BytesIO(b"torn"), 4)  # wrong size, wrong hash
    assert store.put_blob(data) == ref
    assert store.get_blob(ref.sha256) == data

    # The same through put_blob_file, streamed in one conditional PUT.
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(64 * 1024))
    file_ref = BlobRef(hashlib.sha256(path.read_bytes()).hexdigest(), 64 * 1024)
    raw.put_object(store.bucket, file_ref.key, io.BytesIO(b"x" * 10), 10)
    assert store.put_blob_file(path) == file_ref
    assert store.get_blob(file_ref.sha256) == path.read_bytes()
