"""Deleting Datasets on the devcluster: the finalizer applies spec.governance.deletionPolicy
against the real S3 before the object goes.

Three Datasets over small inbox CSVs (unique content each, so no version id is shared with
another Dataset) are collected at once, then deleted:
- ``plain`` (Delete, nothing uses it): the object and every object of it in S3 go;
- ``pinned`` (Delete) with two versions, the first the dataset version of an approved
  EdgeModel version (written into the model's status, as the registry records it): the
  second version, the inbox and the rest go, the first stays, the Event says why, and a
  retention record lists it;
- ``kept`` (Retain, retentionDays 1): everything stays and a retention record lists it;
  retention applied to that record two days later (``now`` moved, since S3 cannot backdate
  objects) deletes it all, the record included;
- ``outage`` (Delete) while S3 is stopped: it stays Terminating, a DeletionRetrying Event
  says why and how to force it, and once S3 is back the retry deletes its data.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeops.api import format_time
from edgeops.datasets import layout
from edgeops.datasets.deletion import apply_retained
from edgeops.devcluster import processes
from edgeops.store import ArtifactStore
from tests.conftest import Cluster, wait_for
from tests.integration.gateway_client import edge_model

pytestmark = pytest.mark.integration

HEADER = "t,ax,label\n"
SCHEMA = {
    "features": [{"name": "ax", "type": "float", "min": -20, "max": 20}],
    "label": "label",
    "rowKey": ["t"],
}


def _csv(seed: str) -> bytes:
    rng = random.Random(seed)
    rows = [f"{i},{rng.uniform(-10, 10):.6f},{'walk' if i % 3 else 'run'}\n" for i in range(30)]
    return (HEADER + "".join(rows)).encode()


def _dataset(name: str, policy: str) -> dict[str, Any]:
    return {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {
            "schema": SCHEMA,
            "sources": [{"inbox": {}}],
            "governance": {
                "classification": "personal",
                "legalBasis": "consent",
                "retentionDays": 1,
                "deletionPolicy": policy,
            },
        },
    }


def _latest(cluster: Cluster, ns: str, name: str, other_than: str | None = None) -> str:
    def published() -> str | None:
        got = (cluster.get("dataset", name, "-n", ns).get("status") or {}).get("latestVersion")
        return str(got) if got and got != other_than else None

    return str(wait_for(published, 90, f"a version of {ns}/{name}", interval=0.3))


def _keys(store: ArtifactStore, ns: str, name: str) -> list[str]:
    """The Dataset's folder and its inbox (blobs are shared, garbage-collected later)."""
    return [
        o.key
        for prefix in (layout.dataset_prefix(ns, name), layout.inbox_prefix(ns, name))
        for o in store.list(prefix)
    ]


def _delete(cluster: Cluster, ns: str, name: str) -> None:
    cluster.kubectl("delete", "dataset", name, "-n", ns, "--wait=false")
    wait_for(lambda: not cluster.get("dataset", name, "-n", ns), 60, f"{name} to be gone")


def _event(cluster: Cluster, ns: str, name: str, reason: str) -> str:
    def found() -> str | None:
        for event in cluster.events(ns, name):
            if event.get("reason") == reason:
                return str(event["message"])
        return None

    return str(wait_for(found, 30, f"a {reason} Event on {name}"))


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Any:
    namespace = cluster.namespace("dsdel")
    store = cluster.store()
    datasets = (("plain", "Delete"), ("pinned", "Delete"), ("kept", "Retain"), ("outage", "Delete"))
    for name, policy in datasets:
        seed = f"{namespace}/{name}"
        store.put_bytes(layout.inbox_prefix(namespace, name) + "1.csv", _csv(seed), "text/csv")
        cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(_dataset(name, policy))
        )
    yield namespace
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_delete_policy_removes_the_object_and_its_data(cluster: Cluster, ns: str) -> None:
    store = cluster.store()
    version = _latest(cluster, ns, "plain")
    assert store.exists(layout.manifest_key(ns, "plain", version))
    assert store.exists(layout.inbox_prefix(ns, "plain") + "1.csv")
    _delete(cluster, ns, "plain")
    assert _keys(store, ns, "plain") == []
    message = _event(cluster, ns, "plain", "DataDeleted")
    assert "deletionPolicy Delete" in message and "no version kept" in message
    assert store.list(layout.RETAINED_ROOT + f"{ns}/plain/") == []


def test_versions_an_approved_model_uses_survive_deletion(cluster: Cluster, ns: str) -> None:
    store = cluster.store()
    used = _latest(cluster, ns, "pinned")
    patch = json.dumps({"spec": {"split": {"train": 0.5, "validation": 0.25, "test": 0.25}}})
    cluster.kubectl("patch", "dataset", "pinned", "-n", ns, "--type=merge", "-p", patch)
    unused = _latest(cluster, ns, "pinned", other_than=used)
    model = edge_model("scorer")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(model))
    status = {
        "currentVersion": 3,
        "latestVersion": 3,
        "versions": [
            {
                "number": 3,
                "trainingRun": "scorer-r3",
                "created": format_time(datetime.now(UTC)),
                "state": "Approved",
                "datasetVersion": used,
            }
        ],
    }
    cluster.kubectl(
        "patch", "edgemodel", "scorer", "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    # The operator learns of the model through its watch; give the event a moment.
    wait_for(
        lambda: cluster.get("edgemodel", "scorer", "-n", ns)["status"].get("currentVersion"),
        10,
        "the model status",
    )
    used_keys = {o.key for o in store.list(layout.version_prefix(ns, "pinned", used))}
    assert layout.manifest_key(ns, "pinned", used) in used_keys

    _delete(cluster, ns, "pinned")
    left = set(_keys(store, ns, "pinned"))
    assert left == used_keys | {layout.index_key(ns, "pinned")}
    assert not store.list(layout.version_prefix(ns, "pinned", unused))
    index = store.get_json(layout.index_key(ns, "pinned"))
    assert [v["id"] for v in index["versions"]] == [used]
    message = _event(cluster, ns, "pinned", "DataDeleted")
    assert f"version {used[:12]} kept: used by EdgeModel scorer v3 (current)" in message
    (record,) = store.list(layout.RETAINED_ROOT + f"{ns}/pinned/")
    document = store.get_json(record.key)
    assert document["deletionPolicy"] == "Delete"
    assert [v["id"] for v in document["versions"]] == [used]


def test_retain_policy_keeps_data_and_retention_goes_on(cluster: Cluster, ns: str) -> None:
    store = cluster.store()
    version = _latest(cluster, ns, "kept")
    before = set(_keys(store, ns, "kept"))
    assert layout.manifest_key(ns, "kept", version) in before
    _delete(cluster, ns, "kept")
    assert set(_keys(store, ns, "kept")) == before
    message = _event(cluster, ns, "kept", "DataRetained")
    assert "1 versions and 1 inbox objects kept" in message
    (record,) = store.list(layout.RETAINED_ROOT + f"{ns}/kept/")
    document = store.get_json(record.key)
    assert (document["retentionDays"], document["classification"]) == (1, "personal")
    assert [v["id"] for v in document["versions"]] == [version]
    assert f"retention continues from {record.key}" in message

    # Retention from the record alone: now, nothing is due; two days later, all of it.
    now = datetime.now(UTC)
    report = apply_retained(store, record.key, now, {}, None, recreated=False)
    assert report.deleted_versions == [] and not report.removed_record
    report = apply_retained(store, record.key, now + timedelta(days=2), {}, None, False)
    assert report.deleted_versions == [version] and report.deleted_raw == 1
    assert report.removed_record and not store.exists(record.key)
    assert _keys(store, ns, "kept") == []


def test_s3_outage_holds_the_deletion_and_a_retry_finishes_it(cluster: Cluster, ns: str) -> None:
    store = cluster.store()
    _latest(cluster, ns, "outage")
    component = json.loads(cluster.dev.state_file.read_text())["components"]["s3"]
    assert processes.stop(int(component["pid"]), str(component["argv0"]))
    try:
        cluster.kubectl("delete", "dataset", "outage", "-n", ns, "--wait=false")
        message = _event(cluster, ns, "outage", "DeletionRetrying")
        assert "the Dataset stays Terminating and the deletion is retried" in message
        assert '"finalizers":null' in message
        held = cluster.get("dataset", "outage", "-n", ns)
        assert held["metadata"]["deletionTimestamp"]
    finally:
        cluster.dev.up(with_operator=True, report=lambda _m: None)
    wait_for(lambda: not cluster.get("dataset", "outage", "-n", ns), 120, "outage to be gone")
    assert _keys(store, ns, "outage") == []
    assert "deletionPolicy Delete" in _event(cluster, ns, "outage", "DataDeleted")
