"""Retention and blob garbage collection against the devcluster's real S3, on versions the
real operator wrote: expired versions and raw samples go, the latest version and the ones
deployed models use stay readable, and only blobs nothing references are collected.

Time: enforce_retention and collect_garbage take ``now`` as an argument, and S3 (MinIO)
cannot backdate an object's Last-Modified or a version's ``created``. So instead of making
the data old, the test calls them with ``now`` two days in the future: with
``retentionDays: 1`` every version and inbox object is then expired, and every blob is past
the one-hour grace period.

Isolation: the bucket is shared by the whole test session, and the operator keeps working
in other namespaces while this module runs (scheduled retraining, Jobs uploading training
artifacts before writing the results.json that references them, bundles signed before the
registry names them). A garbage collection with a future ``now`` over the whole bucket would
delete every such in-flight blob, so it must not see them. The functions take any ``Store``,
so the test hands them the real ArtifactStore narrowed by `_ScopedStore`: the blob listing
shows only the blobs this test created (the Dataset's shards, a blob named by a runs/
document, an orphan), and a delete outside this test's objects fails the test instead of
reaching S3. Everything else - reading every manifest, results and registry document in the
bucket to find references, listing and deleting - is the real S3 through the real client,
so the reference scan is bucket-wide exactly as in the operator. No product code needs a
test-only parameter for this.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeops.api import DatasetSpec
from edgeops.datasets import layout
from edgeops.datasets.manifest import parse_manifest
from edgeops.datasets.retention import collect_garbage, enforce_retention
from edgeops.store import ArtifactStore, StoreConfig, blob_key
from edgeops.store.artifacts import BLOB_PREFIX, ObjectInfo
from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.integration

NAME = "expiring"
HEADER = "t,ax,ay,label,site\n"
SCHEMA = {
    "features": [
        {"name": "ax", "type": "float", "min": -20, "max": 20},
        {"name": "ay", "type": "float", "min": -20, "max": 20},
    ],
    "label": "label",
    "sliceColumns": ["site"],
    "rowKey": ["t"],
}
#: Each split change makes the operator publish a new version (v2, v3) of the same rows.
RESPLITS = (
    {"train": 0.5, "validation": 0.25, "test": 0.25},
    {"train": 0.34, "validation": 0.33, "test": 0.33},
)
#: Past the one-day retention and the one-hour blob grace period (see the module docstring).
LATER = timedelta(days=2)


class _ScopedStore(ArtifactStore):
    """The real store, narrowed to this test's objects: blob listings show only ``blobs``
    and deleting anything that is not one of them or under ``prefixes`` fails the test."""

    def __init__(self, config: StoreConfig, blobs: set[str], prefixes: tuple[str, ...]) -> None:
        super().__init__(config)
        self.blobs = frozenset(blobs)
        self.prefixes = prefixes
        self.deleted: list[str] = []

    def _mine(self, key: str) -> bool:
        if key.startswith(BLOB_PREFIX):
            return key.rsplit("/", 1)[-1] in self.blobs
        return key.startswith(self.prefixes)

    def delete(self, keys: Iterable[str]) -> int:
        requested = [*keys]
        strays = [k for k in requested if not self._mine(k)]
        assert not strays, f"retention would delete objects of other tests: {strays[:5]}"
        self.deleted.extend(requested)
        return super().delete(requested)

    def list(self, prefix: str, bucket: str | None = None) -> list[ObjectInfo]:
        found = super().list(prefix, bucket)
        if prefix.startswith(BLOB_PREFIX):
            return [o for o in found if self._mine(o.key)]
        return found


def _csv(seed: str) -> bytes:
    """60 rows whose values are unique to this run, so no other Dataset in the shared
    bucket has the same shards (blobs are shared by content)."""
    rng = random.Random(seed)
    rows = [
        f"{i},{rng.uniform(-10, 10):.6f},{rng.uniform(-10, 10):.6f},"
        f"{'walk' if i % 3 else 'run'},{'a' if i % 2 else 'b'}\n"
        for i in range(60)
    ]
    return (HEADER + "".join(rows)).encode()


def _dataset(cluster: Cluster, ns: str) -> dict[str, Any]:
    return cluster.get("dataset", NAME, "-n", ns)


def _new_version(cluster: Cluster, ns: str, other_than: str | None = None) -> str:
    def published() -> str | None:
        latest = (_dataset(cluster, ns).get("status") or {}).get("latestVersion")
        return str(latest) if latest and latest != other_than else None

    return str(wait_for(published, 60, f"a new version of {ns}/{NAME}", interval=0.3))


def _blobs(store: ArtifactStore, ns: str, version: str) -> set[str]:
    manifest = store.get_bytes(layout.manifest_key(ns, NAME, version))
    return {e.sha256 for e in parse_manifest(manifest)}


def _index_ids(store: ArtifactStore, ns: str) -> list[str]:
    return [str(v["id"]) for v in store.get_json(layout.index_key(ns, NAME))["versions"]]


def test_retention_and_garbage_collection_on_real_s3(cluster: Cluster) -> None:
    ns = cluster.namespace("retention")
    store = cluster.store()
    inbox = layout.inbox_prefix(ns, NAME)
    store.put_bytes(inbox + "batch-0.csv", _csv(ns), "text/csv")
    dataset = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": NAME, "namespace": ns},
        # No collection schedule: the operator collects once per spec generation, so it
        # does not rewrite the index while the test enforces retention on it.
        "spec": {
            "schema": SCHEMA,
            "sources": [{"inbox": {}}],
            "governance": {"classification": "internal", "retentionDays": 1},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(dataset))
    ids = [_new_version(cluster, ns)]
    for split in RESPLITS:
        patch = json.dumps({"spec": {"split": split}})
        cluster.kubectl("patch", "dataset", NAME, "-n", ns, "--type=merge", "-p", patch)
        ids.append(_new_version(cluster, ns, other_than=ids[-1]))
    expired, deployed, latest = ids
    assert _index_ids(store, ns) == ids
    blobs = {v: _blobs(store, ns, v) for v in ids}
    # Shards only the expired version has; schema.json is shared by all three versions.
    doomed = blobs[expired] - blobs[deployed] - blobs[latest]
    assert doomed

    # A blob only a training result names (as an s3:// URI and as a bare hash), and one
    # nothing names, as a crashed upload leaves behind.
    result_blob = store.put_blob(f"metrics of a run in {ns}".encode())
    store.put_json(
        f"runs/{ns}/probe/{uuid.uuid4()}/results.json",
        {
            "artifacts": [
                {
                    "uri": layout.s3_uri(store.bucket, result_blob.key),
                    "sha256": result_blob.sha256,
                }
            ]
        },
    )
    orphan = store.put_blob(f"orphaned upload in {ns}".encode())
    # Rejected rows a failed (TooManyRejected) collection left: raw input, so retention
    # deletes them like inbox samples. Written here as ingest writes them; name: a fingerprint.
    rejects = layout.failed_rejects_key(ns, NAME, hashlib.sha256(ns.encode()).hexdigest())
    store.put_bytes(rejects, b'{"reason": "TypeMismatch", "row": {}}\n', "application/x-ndjson")
    scoped = _ScopedStore(
        store.config,
        set[str]().union(*blobs.values()) | {result_blob.sha256, orphan.sha256},
        (layout.dataset_prefix(ns, NAME), inbox),
    )
    governance = DatasetSpec.model_validate(_dataset(cluster, ns)["spec"]).governance
    assert governance.retention_days == 1

    # Now: nothing has expired yet and the orphan is inside the grace period.
    now = datetime.now(UTC)
    report = enforce_retention(scoped, ns, NAME, governance, now, {deployed}, inbox)
    assert (report.deleted_versions, report.kept_for_models, report.deleted_raw) == ([], [], 0)
    assert report.deleted_rejects == 0 and store.exists(rejects)
    assert collect_garbage(scoped, now) == 0
    assert store.get_blob(orphan.sha256) == f"orphaned upload in {ns}".encode()
    assert scoped.deleted == []
    assert _index_ids(store, ns) == ids

    # Two days later: the oldest version expires; the one a deployed model uses and the
    # latest stay; the raw inbox sample and the rejects (older than the one-day cut-off) go.
    later = now + LATER
    report = enforce_retention(scoped, ns, NAME, governance, later, {deployed}, inbox)
    assert report.deleted_versions == [expired]
    assert report.kept_for_models == [deployed]
    assert report.deleted_raw == 1
    assert report.deleted_rejects == 1
    assert not store.exists(rejects)
    assert _index_ids(store, ns) == [deployed, latest]
    assert store.list(layout.version_prefix(ns, NAME, expired)) == []
    assert not store.exists(layout.manifest_key(ns, NAME, expired))
    assert store.list(inbox) == []
    # Retention removes versions; their content stays until garbage collection.
    assert all(store.exists(blob_key(sha)) for sha in doomed)

    deleted = collect_garbage(scoped, later)
    assert deleted == len(doomed) + 1
    collected = {k.rsplit("/", 1)[-1] for k in scoped.deleted if k.startswith(BLOB_PREFIX)}
    assert collected == doomed | {orphan.sha256}
    assert not any(store.exists(blob_key(sha)) for sha in collected)
    # What survives reads back whole; get_blob verifies each blob against its hash.
    for version in (deployed, latest):
        entries = parse_manifest(store.get_bytes(layout.manifest_key(ns, NAME, version)))
        assert {e.key for e in entries} >= {"schema.json", "data/train.jsonl"}
        for entry in entries:
            data = store.get_blob(entry.sha256)
            assert (len(data), hashlib.sha256(data).hexdigest()) == (entry.size, entry.sha256)
        assert store.get_json(layout.version_info_key(ns, NAME, version))["id"] == version
        assert store.exists(layout.profile_key(ns, NAME, version))
    assert store.get_blob(result_blob.sha256) == f"metrics of a run in {ns}".encode()
    # Nothing else is garbage: a second pass deletes nothing.
    assert collect_garbage(scoped, later) == 0

    # Stop the operator collecting the now-empty inbox for the rest of the session.
    cluster.kubectl("delete", "dataset", NAME, "-n", ns, "--wait=false")
