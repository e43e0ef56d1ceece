"""Issue 17 item 1: a tenant's pods get scoped, short-lived S3 credentials, never the
operator's keys, and a tenant's own Secret is never overwritten.

The attack: read the credentials the operator gave a TrainingRun in namespace A (as anyone
who may read Secrets or exec into pods in A can) and use them with a real S3 client
against the devcluster's MinIO to list and read namespace B's `datasets/`, `inbox/`,
`models/` and `runs/`, or to write anywhere else. Every such request must now be refused,
while the run itself (the trainer with the same credentials) still succeeds.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeops.datasets import layout
from edgeops.datasets.manifest import parse_manifest
from edgeops.store import ArtifactStore, StorageRejectedError, StoreConfig
from tests.conftest import Cluster, condition, wait_for

pytestmark = pytest.mark.integration


def _decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def _store(cluster: Cluster, access: str, secret: str, token: str) -> ArtifactStore:
    return ArtifactStore(
        StoreConfig(
            endpoint=cluster.env["EDGEOPS_S3_ENDPOINT"],
            access_key=access,
            secret_key=secret,
            bucket=cluster.env["EDGEOPS_S3_BUCKET"],
            session_token=token,
        )
    )


def _refused(call: Any) -> None:
    with pytest.raises(StorageRejectedError) as refused:
        call()
    assert refused.value.code == "AccessDenied", refused.value


def _other_tenant(cluster: Cluster) -> tuple[str, list[str]]:
    """Namespace B with objects under each reserved root, written with the operator's
    credentials (from the cluster's environment)."""
    b = cluster.namespace("tenant-b")
    keys = [
        f"datasets/{b}/private/index.json",
        f"datasets/{b}/private/versions/{'cd' * 32}/manifest.json",
        f"inbox/{b}/private/sample.csv",
        f"models/{b}/m/uid-b/registry.json",
        f"runs/{b}/r/uid-b/results.json",
    ]
    operator_store = cluster.store()
    for key in keys:
        operator_store.put_bytes(key, b'{"secret": "of tenant b"}')
    return b, keys


def _run(name: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "edgeops.dev/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": name},
            "spec": {
                "datasetRef": {"name": "motions"},
                "trainer": {"hyperparameters": {"epochs": 3, "batchSize": 16, "seed": 7}},
                "exports": ["onnx"],
                "backoffLimit": 0,
                **spec,
            },
        }
    )


def test_training_credentials_cannot_reach_another_namespace(cluster: Cluster) -> None:
    b, b_keys = _other_tenant(cluster)
    a = cluster.namespace("tenant-a")
    # A tenant's own Secret under the name the operator used to copy its keys into.
    cluster.kubectl(
        "create", "secret", "generic", "edgeops-s3", "-n", a,
        "--from-literal=accessKey=mine", "--from-literal=secretKey=also-mine",
    )  # fmt: skip
    own_before = cluster.get("secret", "edgeops-s3", "-n", a)
    version = cluster.motions_dataset(a)
    cluster.kubectl("apply", "-n", a, "-f", "-", input=_run("r", activeDeadlineSeconds=7200))
    secret = wait_for(
        lambda: cluster.get("secret", "r-train-s3", "-n", a), 60, "the run's credentials"
    )
    run = cluster.get("trainingrun", "r", "-n", a)
    uid = run["metadata"]["uid"]
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("TrainingRun", uid, True)
    data = _decoded(secret)
    assert set(data) == {"accessKey", "secretKey", "sessionToken"}
    assert data["accessKey"] != cluster.env["EDGEOPS_S3_ACCESS_KEY"]
    assert data["secretKey"] != cluster.env["EDGEOPS_S3_SECRET_KEY"]
    expires = datetime.fromisoformat(
        secret["metadata"]["annotations"]["edgeops.dev/credentials-expire-at"]
    )
    # Short-lived: the Job's deadline (7200 s) plus a margin, not the default 12 h.
    assert timedelta(hours=2) < expires - datetime.now(UTC) <= timedelta(hours=2, minutes=6)
    stolen = _store(cluster, data["accessKey"], data["secretKey"], data["sessionToken"])

    # The attack: list and read the other tenant's objects, or anything at all.
    for prefix in ("", "datasets/", f"datasets/{b}/", f"runs/{b}/", f"models/{b}/", "blobs/"):
        _refused(lambda prefix=prefix: stolen.list(prefix))
    _refused(lambda: stolen.list(f"datasets/{a}/"))  # not even its own namespace's listing
    for key in b_keys:
        _refused(lambda key=key: stolen.get_bytes(key))
    # Nor write outside its run's prefix and the content-addressed blobs.
    for key in (
        f"runs/{b}/r/uid-b/results.json",
        f"models/{b}/m/uid-b/registry.json",
        f"datasets/{b}/private/index.json",
        f"datasets/{a}/motions/index.json",
        f"inbox/{a}/motions/forged.csv",
        f"runs/{a}/other/{uid}/results.json",
        f"runs/{a}/r/another-uid/results.json",
        "anything-else",
    ):
        _refused(lambda key=key: stolen.put_bytes(key, b"forged"))
    # Nor read its own dataset's other documents: only the version it trains.
    _refused(lambda: stolen.get_bytes(layout.index_key(a, "motions")))
    for key in b_keys:  # B's objects are intact
        assert cluster.store().get_bytes(key) == b'{"secret": "of tenant b"}'

    # What the trainer needs works: its version's manifest and blobs, and its outputs.
    manifest = stolen.get_bytes(layout.manifest_key(a, "motions", version))
    entry = parse_manifest(manifest)[0]
    assert len(stolen.get_blob(entry.sha256)) == entry.size
    assert stolen.put_blob(b"an artifact of run r").size == len(b"an artifact of run r")
    stolen.put_bytes(f"runs/{a}/r/{uid}/probe.json", b"{}")

    status = wait_for(
        lambda: (
            (s := cluster.get("trainingrun", "r", "-n", a).get("status") or {}).get("phase")
            in ("Succeeded", "Failed")
            and s
        ),
        420,
        "run r to finish",
    )
    assert status["phase"] == "Succeeded", condition(status, "Succeeded")
    assert {art["format"] for art in status["artifacts"]} >= {"onnx", "model-card"}

    # The tenant's own Secret was left exactly as it was.
    own_after = cluster.get("secret", "edgeops-s3", "-n", a)
    assert own_after["data"] == own_before["data"]
    assert own_after["metadata"]["resourceVersion"] == own_before["metadata"]["resourceVersion"]
    assert "ownerReferences" not in own_after["metadata"]


def test_a_users_secret_of_the_credentials_name_is_left_alone(cluster: Cluster) -> None:
    a = cluster.namespace("tenant-a")
    cluster.kubectl(
        "create", "secret", "generic", "taken-train-s3", "-n", a,
        "--from-literal=accessKey=mine",
    )  # fmt: skip
    before = cluster.get("secret", "taken-train-s3", "-n", a)
    cluster.motions_dataset(a)
    cluster.kubectl("apply", "-n", a, "-f", "-", input=_run("taken"))
    ready = wait_for(
        lambda: (c := _ready(cluster, a, "taken")) is not None and c["reason"] == "NameTaken" and c,
        60,
        "the run to report the taken name",
    )
    assert "taken-train-s3" in ready["message"] and "not owned by EdgeOps" in ready["message"]
    after = cluster.get("secret", "taken-train-s3", "-n", a)
    assert after["data"] == before["data"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert not cluster.get("job", "taken-train", "-n", a)  # nothing runs without credentials
    assert "NameTaken" in {e["reason"] for e in cluster.events(a, "taken")}


def _ready(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    status = cluster.get("trainingrun", name, "-n", namespace).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def assert_scoped_serving_credentials(
    cluster: Cluster, namespace: str, secret: dict[str, Any], storage_uri: str
) -> None:
    """The predictor's Secret holds read-only credentials for its served version's prefix
    (``storage_uri``): it can list and read there, and nowhere else."""
    data = _decoded(secret)
    assert data["AWS_ACCESS_KEY_ID"] != cluster.env["EDGEOPS_S3_ACCESS_KEY"]
    assert data["AWS_SESSION_TOKEN"]
    stolen = _store(
        cluster, data["AWS_ACCESS_KEY_ID"], data["AWS_SECRET_ACCESS_KEY"], data["AWS_SESSION_TOKEN"]
    )
    prefix = storage_uri.split("/", 3)[3]
    served = stolen.list(prefix + "/")
    assert served, f"nothing to serve under {prefix}"
    assert stolen.get_bytes(served[0].key)
    model_root = prefix.rsplit("/versions/", 1)[0]
    for forbidden in ("", "blobs/", f"datasets/{namespace}/", f"{model_root}/"):
        _refused(lambda forbidden=forbidden: stolen.list(forbidden))
    _refused(lambda: stolen.get_bytes(f"{model_root}/registry.json"))
    _refused(lambda: stolen.put_bytes(f"{prefix}/model.onnx", b"forged"))
