"""Issue 17 item 7: objects EdgeOps does not own are never adopted, changed or deleted.

A user's own ConfigMap or Job named like a run's child (``<run>-train``), a Job in the
operator's namespace named like a run's evaluation Job (``edgeops-eval-<run uid>``) and a
user's own TrainingRun named like a model's next run (``<model>-r1``) are left exactly as
they were; the owner reports ``NameTaken`` in a condition and an Event instead of taking
them over. A user's FleetRollout named like the one a promotion creates
(``<model>-v<n>-<k>``) is skipped: the promotion's rollout gets the next free name."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from edgeops.signing import generate_key
from tests.conftest import Cluster, condition, wait_for
from tests.integration.device_fleet import Line, edge_model

pytestmark = pytest.mark.integration


#: A trainer that trains nothing: it writes a results manifest (what the operator waits
#: for before it creates the evaluation Job) with the run's scoped credentials.
RESULTS_ONLY = """
import json, sys
from edgeops.settings import settings, trainer_settings
from edgeops.store import ArtifactStore, StoreConfig
config = json.load(open(sys.argv[1].split("=", 1)[1]))
token = trainer_settings().s3_session_token
store = ArtifactStore(StoreConfig.from_settings(settings(), session_token=token))
store.put_json(config["output"]["prefix"] + "/results.json", {"artifacts": []})
"""


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


@pytest.fixture(scope="module")
def taken_ns(cluster: Cluster) -> str:
    """A namespace with Dataset ``motions``, shared by the run tests below."""
    ns = cluster.namespace("taken")
    cluster.motions_dataset(ns)
    return ns


def _suspended_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
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


def test_a_users_config_map_and_job_of_a_runs_child_name_are_left_alone(
    cluster: Cluster, taken_ns: str
) -> None:
    ns = taken_ns
    cluster.kubectl(
        "create", "configmap", "cm-train", "-n", ns, "--from-literal=mine=yes"
    )  # fmt: skip
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_suspended_job("job-train")))
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


def test_a_job_holding_the_evaluation_jobs_name_is_left_alone(
    cluster: Cluster, taken_ns: str
) -> None:
    """The evaluation Job runs in the operator's namespace, named after the run's UID; an
    object EdgeOps does not own of that name stops the run at Evaluating with NameTaken (a
    condition, one Event however often it looks again), never a generic error or a retry
    storm, and the object is not touched."""
    ns, home = taken_ns, "edgeops-system"
    run = json.loads(_run("ev"))
    run["spec"]["trainer"]["command"] = ["python", "-c", RESULTS_ONLY]  # no TF: seconds
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(run))
    uid = cluster.get("trainingrun", "ev", "-n", ns)["metadata"]["uid"]
    name = f"edgeops-eval-{uid}"
    cluster.kubectl("apply", "-n", home, "-f", "-", input=json.dumps(_suspended_job(name)))
    try:
        user_job = cluster.get("job", name, "-n", home)
        ready = dict(
            wait_for(
                lambda: (
                    (c := _ready(cluster, "trainingrun", ns, "ev")) is not None
                    and c["reason"] == "NameTaken"
                    and c
                ),
                240,
                "run ev to report NameTaken for its evaluation Job",
            )
        )
        assert ready["message"].startswith(
            f"cannot create the evaluation Job in {home}: a Job named {name} exists and is "
            "not owned by EdgeOps"
        ), ready
        status = cluster.get("trainingrun", "ev", "-n", ns)["status"]
        assert status["phase"] == "Running", status  # trained; waits for its evaluation
        assert condition(status, "Succeeded")["status"] == "Unknown"
        _unchanged(user_job, cluster.get("job", name, "-n", home))
        taken = [e for e in cluster.events(ns, "ev") if e["reason"] == "NameTaken"]
        assert len(taken) == 1, taken
    finally:
        cluster.kubectl("delete", "job", name, "-n", home, "--wait=false", check=False)
        cluster.kubectl("delete", "trainingrun", "ev", "-n", ns, "--wait=false", check=False)


def test_a_users_fleetrollout_of_the_promotions_name_is_skipped(cluster: Cluster) -> None:
    """Promotion creates ``<model>-v1-1``; a user's FleetRollout of that name (for another
    model) is left alone and the promotion's rollout is ``<model>-v1-2``."""
    ns = cluster.namespace("taken-rollout")
    users = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "FleetRollout",
        "metadata": {"name": "m-v1-1", "labels": {"mine": "yes"}},
        "spec": {"modelRef": {"name": "other"}, "version": 1, "steps": [{"percent": 100}]},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(users))
    before = cluster.get("fleetrollout", "m-v1-1", "-n", ns)
    template = {"mode": "Manual", "rolloutTemplate": {"steps": [{"percent": 100}]}}
    line = Line.apply(cluster, ns, edge_model("m", promotion=template), generate_key())
    line.publish(1, b"model bytes", current=False)
    cluster.kubectl(
        "annotate", "edgemodel", "m", "-n", ns, f"edgeops.dev/promote=1 {time.time_ns()}"
    )
    ours = wait_for(lambda: cluster.get("fleetrollout", "m-v1-2", "-n", ns), 60, "m-v1-2")
    assert ours["spec"]["version"] == 1 and ours["spec"]["modelRef"] == {"name": "m"}
    assert ours["metadata"]["ownerReferences"][0]["uid"] == line.uid
    after = cluster.get("fleetrollout", "m-v1-1", "-n", ns)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["spec"] == before["spec"] and "ownerReferences" not in after["metadata"]
    assert after["metadata"]["labels"] == {"mine": "yes"}
    promoted = condition(cluster.get("edgemodel", "m", "-n", ns)["status"], "Promoted")
    assert promoted["status"] == "True", promoted
    assert "FleetRollout m-v1-2 moves the fleet to it" in promoted["message"]
    assert "m-v1-1 held by objects EdgeOps does not own, skipped" in promoted["message"]
    messages = [e["message"] for e in cluster.events(ns, "m") if e["reason"] == "NameTaken"]
    assert messages == [
        "FleetRollout m-v1-1 exists and is not owned by EdgeOps (left alone): created "
        "m-v1-2 for v1 instead"
    ], messages
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


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
