"""The operator's store reads S3 credentials from a Secret when the env carries none."""

from __future__ import annotations

import pytest

from edgeops.controllers import storage
from edgeops.k8s import client as k8s
from tests.conftest import Cluster

pytestmark = pytest.mark.integration


def test_credentials_come_from_the_secret(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", cluster.kubeconfig)
    monkeypatch.setenv("EDGEOPS_S3_ENDPOINT", cluster.env["EDGEOPS_S3_ENDPOINT"])
    monkeypatch.setenv("EDGEOPS_S3_SECRET", "edgeops-system/edgeops-s3")
    monkeypatch.delenv("EDGEOPS_S3_ACCESS_KEY", raising=False)
    monkeypatch.delenv("EDGEOPS_S3_SECRET_KEY", raising=False)
    monkeypatch.setattr(storage, "_store", None)
    k8s.api_client.cache_clear()
    try:
        store = storage.artifact_store()
        assert store.config.access_key == cluster.env["EDGEOPS_S3_ACCESS_KEY"]
        ref = store.put_blob(b"credentials from a Secret")
        assert store.get_blob(ref.sha256) == b"credentials from a Secret"
    finally:
        k8s.api_client.cache_clear()
