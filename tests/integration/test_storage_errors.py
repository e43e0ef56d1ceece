"""What the real S3 server's refusals become: StorageRejectedError carrying the S3 code
(wrong credentials, a missing bucket), ObjectMissingError for a missing object, and a
Dataset condition that names the code."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from edgeops.store import (
    ArtifactStore,
    ObjectMissingError,
    StorageRejectedError,
    StoreConfig,
)
from tests.conftest import Cluster, wait_for
from tests.integration.test_datasets import SCHEMA, _apply, _condition, _status

pytestmark = pytest.mark.integration


def _config(cluster: Cluster) -> StoreConfig:
    return cluster.store_config()


def _refusal(store: ArtifactStore) -> StorageRejectedError:
    with pytest.raises(StorageRejectedError) as caught:
        store.list("datasets/")
    return caught.value


def test_an_unknown_access_key_is_refused_with_its_code(cluster: Cluster) -> None:
    config = dataclasses.replace(_config(cluster), access_key="no-such-access-key")
    store = ArtifactStore(config)
    error = _refusal(store)
    assert error.code == "InvalidAccessKeyId" and error.credentials
    assert str(error).startswith("S3 refused: InvalidAccessKeyId (")
    with pytest.raises(StorageRejectedError, match="InvalidAccessKeyId"):
        store.get_bytes("datasets/index.json")
    with pytest.raises(StorageRejectedError, match="InvalidAccessKeyId"):
        store.put_bytes("scratch/denied", b"x")


def test_a_wrong_secret_key_is_refused_with_its_code(cluster: Cluster) -> None:
    config = _config(cluster)
    store = ArtifactStore(dataclasses.replace(config, secret_key=config.secret_key + "-wrong"))
    error = _refusal(store)
    assert error.code == "SignatureDoesNotMatch" and error.credentials
    assert config.secret_key not in str(error)


def test_a_missing_bucket_is_refused_and_a_missing_object_is_missing(cluster: Cluster) -> None:
    store = cluster.store()
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    with pytest.raises(StorageRejectedError) as caught:
        store.list("raw/", bucket=missing)
    assert caught.value.code == "NoSuchBucket" and not caught.value.credentials
    assert f"in bucket '{missing}'" in str(caught.value)
    elsewhere = ArtifactStore(dataclasses.replace(_config(cluster), bucket=missing))
    with pytest.raises(StorageRejectedError, match="NoSuchBucket"):
        elsewhere.put_bytes("k", b"x")
    with pytest.raises(StorageRejectedError, match="NoSuchBucket"):
        elsewhere.ping()
    key = f"scratch/{uuid.uuid4().hex}"
    with pytest.raises(ObjectMissingError, match=f"s3://{store.bucket}/{key} does not exist"):
        store.get_bytes(key)
    assert store.stat(key) is None


def test_a_dataset_reading_a_missing_bucket_says_no_such_bucket(cluster: Cluster) -> None:
    ns = cluster.namespace("ds-nobucket")
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    _apply(
        cluster,
        ns,
        "lost",
        {"schema": SCHEMA, "sources": [{"s3": {"bucket": missing, "prefix": "raw/"}}]},
    )

    def refused() -> dict[str, str] | None:
        found = _condition(_status(cluster, ns, "lost"), "StorageAvailable")
        return found if found.get("status") == "False" else None

    condition = wait_for(refused, 60, "StorageAvailable=False", interval=0.3)
    assert condition["reason"] == "StorageRejected"
    assert "S3 refused: NoSuchBucket" in condition["message"]
    assert missing in condition["message"]
    ready = _condition(_status(cluster, ns, "lost"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "StorageRejected")
    events = cluster.events(ns, "lost")
    assert any(e["reason"] == "StorageRejected" for e in events)
