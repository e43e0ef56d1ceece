"""A TrainingRun deleted and recreated under the same name never adopts the Job of its
predecessor that is still being garbage-collected: it waits, then creates its own."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Cluster, condition, wait_for

pytestmark = pytest.mark.integration

RUN = json.dumps(
    {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "again"},
        "spec": {
            "datasetRef": {"name": "motions"},
            "trainer": {"hyperparameters": {"epochs": 2, "batchSize": 8, "seed": 7}},
            "exports": ["onnx"],
            "backoffLimit": 0,
        },
    }
)
HOLD = "edgeops.dev/test-hold"  # keeps the old Job in the cluster while it is being deleted


def _owner_uid(obj: dict[str, Any]) -> str | None:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return next((r["uid"] for r in refs if r.get("controller")), None)


def _ready_message(cluster: Cluster, ns: str) -> str:
    status = cluster.get("trainingrun", "again", "-n", ns).get("status") or {}
    return str(condition(status, "Ready")["message"]) if status.get("conditions") else ""


def test_a_recreated_run_waits_for_its_predecessors_job_then_creates_its_own(
    cluster: Cluster,
) -> None:
    ns = cluster.namespace("recreate")
    cluster.motions_dataset(ns)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=RUN)
    old_uid = cluster.get("trainingrun", "again", "-n", ns)["metadata"]["uid"]
    job = wait_for(lambda: cluster.get("job", "again-train", "-n", ns), 60, "the first Job")
    assert _owner_uid(job) == old_uid
    assert not job["metadata"].get("finalizers")
    hold = json.dumps([{"op": "add", "path": "/metadata/finalizers", "value": [HOLD]}])
    cluster.kubectl("patch", "job", "again-train", "-n", ns, "--type=json", "-p", hold)
    try:
        # Background cascade: the run goes at once, its Job is garbage-collected after.
        cluster.kubectl("delete", "trainingrun", "again", "-n", ns, "--wait=true")
        wait_for(
            lambda: cluster.get("job", "again-train", "-n", ns)["metadata"].get(
                "deletionTimestamp"
            ),
            60,
            "the garbage collector to delete the old Job",
        )
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=RUN)
        new_uid = cluster.get("trainingrun", "again", "-n", ns)["metadata"]["uid"]
        assert new_uid != old_uid
        message = wait_for(
            lambda: (m := _ready_message(cluster, ns)) and "Job again-train" in m and m,
            60,
            "the new run to report the old Job",
        )
        assert (
            f"Job again-train still belongs to a previous TrainingRun of the same name "
            f"(uid {old_uid}); waiting for it to be garbage-collected"
        ) in message
        status = cluster.get("trainingrun", "again", "-n", ns)["status"]
        assert status["phase"] == "Pending" and "jobName" not in status
        assert condition(status, "Ready")["reason"] == "WaitingForPreviousRun"
        assert _owner_uid(cluster.get("job", "again-train", "-n", ns)) == old_uid
    finally:
        release = json.dumps([{"op": "remove", "path": "/metadata/finalizers"}])
        cluster.kubectl(
            "patch", "job", "again-train", "-n", ns, "--type=json", "-p", release, check=False
        )
    job = wait_for(
        lambda: (j := cluster.get("job", "again-train", "-n", ns)) and _owner_uid(j) == new_uid,
        90,
        "the new run's own Job",
    )
    config = cluster.get("configmap", "again-train", "-n", ns)
    assert _owner_uid(config) == new_uid
    status = wait_for(
        lambda: (
            (s := cluster.get("trainingrun", "again", "-n", ns).get("status") or {}).get("phase")
            in ("Succeeded", "Failed")
            and s
        ),
        420,
        "the new run to finish",
    )
    assert status["phase"] == "Succeeded", condition(status, "Succeeded")
    assert status["jobName"] == "again-train"
    # Results were read under the new run's uid, from the Job it created itself.
    assert any(a["format"] == "onnx" for a in status["artifacts"])
