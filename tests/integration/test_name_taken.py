"""Issue 17 item 7: objects EdgeOps does not own are never adopted, changed or deleted.

A user's own ConfigMap or Job named like a run's child (``<run>-train``) and a user's own
TrainingRun named like a model's next run (``<model>-r1``) are left exactly as they were;
the owner reports ``NameTaken`` in a condition and an Event instead of taking them over."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.integration


def _run(name: str, dataset: str = "motions") -> str:
    return json.dumps(
        {
            "apiVersion": "edgeops.dev/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": name},
            "spec": {
                "datasetRef": {"name": dataset},
                "trainer": {"hyperparameters": {"epochs": 1, "batchSize": 16, "seed": 7}},
                "exports": ["onnx"],
                "backoffLimit": 0,
            },
        }
    )


def _ready(cluster: Cluster, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    status = cluster.get(kind, name, "-n", namespace).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def _name_taken(cluster: Cluster, kind: str, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (
                (c := _ready(cluster, kind, namespace, name)) is not None
                and c["reason"] == "NameTaken"
                and c
            ),
            90,
            f"{kind} {name} to report NameTaken",
        )
    )


def _unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after, "the user's object was deleted"
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert "ownerReferences" not in after["metadata"]


def test_a_users_config_map_and_job_of_a_runs_child_name_are_left_alone(
    cluster: Cluster,
) -> None:
    ns = cluster.namespace("taken")
    cluster.motions_dataset(ns)
    cluster.kubectl(
        "create", "configmap", "cm-train", "-n", ns, "--from-literal=mine=yes"
    )  # fmt: skip
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "job-train"},
        "spec": {
            "suspend": True,  # the user's; nothing needs to run for this test
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "mine", "image": "example.org/mine:1"}],
                }
            },
        },
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))
    config_map = cluster.get("configmap", "cm-train", "-n", ns)
    user_job = cluster.get("job", "job-train", "-n", ns)

    cluster.kubectl("apply", "-n", ns, "-f", "-", input=_run("cm"))
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=_run("job"))
    cm_ready = _name_taken(cluster, "trainingrun", ns, "cm")
    assert "ConfigMap named cm-train exists and is not owned by EdgeOps" in cm_ready["message"]
    job_ready = _name_taken(cluster, "trainingrun", ns, "job")
    assert "Job named job-train exists and is not owned by EdgeOps" in job_ready["message"]

    _unchanged(config_map, cluster.get("configmap", "cm-train", "-n", ns))
    assert cluster.get("configmap", "cm-train", "-n", ns)["data"] == {"mine": "yes"}
    # The run "cm" created no Job of its own either.
    assert not cluster.get("job", "cm-train", "-n", ns)
    after = cluster.get("job", "job-train", "-n", ns)
    _unchanged(user_job, after)
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "example.org/mine:1"
    for run in ("cm", "job"):
        reasons = [e["reason"] for e in cluster.events(ns, run)]
        assert "NameTaken" in reasons, reasons


def test_a_users_trainingrun_named_like_the_models_next_run_is_left_alone(
    cluster: Cluster,
) -> None:
    ns = cluster.namespace("taken-model")
    cluster.motions_dataset(ns)
    # The user's own run of the name the model's first run gets; it trains nothing here
    # (its dataset does not exist), so only its spec and metadata are compared.
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=_run("m-r1", dataset="nowhere"))
    before = cluster.get("trainingrun", "m-r1", "-n", ns)
    model = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "EdgeModel",
        "metadata": {"name": "m"},
        "spec": {
            "training": {
                "datasetRef": {"name": "motions"},
                "trainer": {"hyperparameters": {"epochs": 1, "batchSize": 16, "seed": 7}},
                "exports": ["onnx"],
            },
            "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
        },
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(model))
    ready = _name_taken(cluster, "edgemodel", ns, "m")
    assert "TrainingRun named m-r1 exists and is not owned by EdgeOps" in ready["message"]
    after = cluster.get("trainingrun", "m-r1", "-n", ns)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["spec"] == before["spec"]
    assert "ownerReferences" not in after["metadata"]
    assert after["metadata"].get("labels") == before["metadata"].get("labels")
    assert after["metadata"].get("annotations") == before["metadata"].get("annotations")
    assert "NameTaken" in [e["reason"] for e in cluster.events(ns, "m")]
