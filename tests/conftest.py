"""Shared fixtures: one devcluster per test session (integration and e2e tiers)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from edgeops.devcluster.cluster import DevCluster


class Cluster:
    """Test-facing handle on the session's devcluster."""

    def __init__(self, dev: DevCluster) -> None:
        self.dev = dev
        self.kubeconfig = str(dev.kubeconfig)
        self.kubectl = dev.kubectl
        self.env = dev.env()
        self.endpoints = dev.endpoints()

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=self.kubeconfig)

    def namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        return name


def _cluster_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # EDGEOPS_TEST_HOME keeps the session cluster's state (and logs) somewhere inspectable.
    override = os.environ.get("EDGEOPS_TEST_HOME")
    return Path(override) if override else tmp_path_factory.mktemp("devcluster")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    dev = DevCluster(name="pytest", home=_cluster_home(tmp_path_factory))
    try:
        dev.up(with_operator=True)
        yield Cluster(dev)
    finally:
        if os.environ.get("EDGEOPS_TEST_KEEP_CLUSTER") != "1":
            dev.down()
