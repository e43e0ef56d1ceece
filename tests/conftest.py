"""Shared fixtures: one devcluster per test session (integration and e2e tiers)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from edgeops.devcluster.cluster import DevCluster
from edgeops.settings import predictor_settings, settings
from edgeops.store import ArtifactStore, StoreConfig


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Each test reads EDGEOPS_* settings from its own (monkeypatched) environment."""
    settings.cache_clear()
    predictor_settings.cache_clear()
    yield
    settings.cache_clear()
    predictor_settings.cache_clear()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Polls until `predicate` returns something truthy, and returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    """The condition of `type_` in an object's status (fails the test if absent)."""
    found = [c for c in status.get("conditions") or [] if c["type"] == type_]
    assert found, f"no {type_} condition in {status.get('conditions')}"
    return dict(found[0])


#: The built-in BasicMotions recordings as Dataset `motions`, shared by training tests.
MOTIONS_DATASET = """
apiVersion: edgeops.dev/v1alpha1
kind: Dataset
metadata: {name: motions}
spec:
  sources: [{builtin: {name: basic-motions}}]
  split: {train: 0.6, validation: 0.2, test: 0.2}
  governance: {classification: internal, retentionDays: 30, region: eu-central-1}
"""


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

    def get(self, *args: str) -> dict[str, Any]:
        """`kubectl get ARGS -o json`, or {} when the object does not exist."""
        out = self.kubectl("get", *args, "-o", "json", check=False)
        return dict(json.loads(out.stdout)) if out.returncode == 0 else {}

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Kubernetes Events about the object `name` in `namespace`."""
        selector = f"involvedObject.name={name}"
        found = self.get("events", "-n", namespace, "--field-selector", selector)
        return list(found.get("items", []))

    def store_config(self) -> StoreConfig:
        """How to reach the devcluster's S3 bucket (the variables `edgeops dev env` prints)."""
        return StoreConfig(
            endpoint=self.env["EDGEOPS_S3_ENDPOINT"],
            access_key=self.env["EDGEOPS_S3_ACCESS_KEY"],
            secret_key=self.env["EDGEOPS_S3_SECRET_KEY"],
            bucket=self.env["EDGEOPS_S3_BUCKET"],
        )

    def store(self) -> ArtifactStore:
        """The devcluster's S3 bucket through EdgeOps's own store client."""
        return ArtifactStore(self.store_config())

    def motions_dataset(self, namespace: str) -> str:
        """Applies Dataset `motions` (built-in BasicMotions) and returns its first version."""
        self.kubectl("apply", "-n", namespace, "-f", "-", input=MOTIONS_DATASET)
        return str(
            wait_for(
                lambda: (
                    self.get("dataset", "motions", "-n", namespace)
                    .get("status", {})
                    .get("latestVersion")
                ),
                120,
                "the dataset's first version",
            )
        )

    def namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        return name


#: Settings of the session devcluster's operator. Reconciliation is event-driven: with the
#: periodic resync an hour away, a test that waits on a change the operator should react
#: to fails if no watch event wakes it. Tests serve HTTP(S) sources from 127.0.0.1, which
#: sources refuse by default: that one loopback address is admitted (test_datasets_ssrf.py
#: shows the rest stays refused).
SESSION_OPERATOR_ENV: dict[str, str] = {
    "EDGEOPS_RESYNC_INTERVAL_SECONDS": "3600",
    "EDGEOPS_HTTP_SOURCE_ALLOWED_HOSTS": "127.0.0.1",
    # Devices that stop reporting are marked NotSeen within seconds, not half a minute.
    "EDGEOPS_DEVICE_SWEEP_SECONDS": "2",
}


def _cluster_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # EDGEOPS_TEST_HOME keeps the session cluster's state (and logs) somewhere inspectable.
    override = os.environ.get("EDGEOPS_TEST_HOME")
    return Path(override) if override else tmp_path_factory.mktemp("devcluster")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # The session operator's settings (it inherits this process's environment, also when
    # a test restarts it). Unit tests never see them: tests/unit/conftest.py removes them.
    for name, value in SESSION_OPERATOR_ENV.items():
        os.environ.setdefault(name, value)
    dev = DevCluster(name="pytest", home=_cluster_home(tmp_path_factory))
    try:
        dev.up(with_operator=True)
        yield Cluster(dev)
    finally:
        if os.environ.get("EDGEOPS_TEST_KEEP_CLUSTER") != "1":
            dev.down()
