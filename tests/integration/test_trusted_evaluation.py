"""Issue 17 item 3 on the devcluster: a tenant's trainer that forges its metrics (or lists
arbitrary bytes as its model) gets nothing signed. Gated metrics are measured by EdgeOps's
own evaluation Job, in the operator's namespace, from EdgeOps's image.

Two hostile trainers, both with the trainer image's entrypoint replaced through
``spec.trainer.command`` (the local node runs only EdgeOps images, as a tenant's custom
image would run anything):

* ``forged-metrics`` trains a real (deliberately poor) model and reports accuracy 0.999;
* ``forged-model`` trains nothing, uploads arbitrary bytes as ``model.onnx`` and reports
  accuracy 0.999.

A third EdgeModel (issue 16 item 7) runs the real trainer with its int8 accuracy check
forced to fail as LiteRT's XNNPACK delegate did on mixed-scale data: the run still
succeeds with its other exports, names the failure in ``status.metrics.exportErrors``, and
the version is rejected by its int8 gate with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from edgeops import __version__
from edgeops.training.card import UNTRUSTED_HEADING
from tests.conftest import Cluster, condition, wait_for

pytestmark = pytest.mark.integration

FLOOR = 0.9
CLAIMED = 0.999

#: Runs the real trainer with its reported metrics replaced by flattering numbers.
FORGE_METRICS = """
import sys
from edgeops.training import pipeline, run
real = pipeline.TrainingResult.metrics
def forged(self):
    metrics = real(self)
    for key in list(metrics):
        if key.endswith("accuracy") or key in ("macro_f1",):
            metrics[key] = 0.999
    return metrics
pipeline.TrainingResult.metrics = forged
run.exit_now(run.main(sys.argv[1:]))
"""

#: Trains nothing: arbitrary bytes as the ONNX model, and a results manifest praising them.
FORGE_MODEL = """
import json, sys
from edgeops.settings import settings, trainer_settings
from edgeops.store import ArtifactStore, StoreConfig
config = json.load(open(sys.argv[1].split("=", 1)[1]))
token = trainer_settings().s3_session_token  # the run's scoped credentials, as run.py
store = ArtifactStore(StoreConfig.from_settings(settings(), session_token=token))
ref = store.put_blob(b"#!/bin/sh\\necho these bytes are not a model\\n" * 8)
artifact = {"uri": f"s3://{store.bucket}/{ref.key}", "size": ref.size,
            "sha256": ref.sha256, "format": "onnx", "name": "model.onnx"}
store.put_json(config["output"]["prefix"] + "/results.json", {
    "metrics": {"overall": {"accuracy": 0.999, "onnx_accuracy": 0.999}, "perSlice": []},
    "artifacts": [artifact]})
print("results published")
"""


#: The real trainer, with the int8 model's accuracy check crashing (the int8 model is the one
#: carrying an input standardisation).
XNNPACK = "failed to create XNNPACK runtime (forced by the test)"
FORCE_INT8_FAILURE = f"""
import sys
from edgeops import standardization
from edgeops.training import exports, run
real = exports.run_tflite
def crashing(content, x):
    if standardization.read(content) is not None:
        raise RuntimeError("{XNNPACK}")
    return real(content, x)
exports.run_tflite = crashing
run.exit_now(run.main(sys.argv[1:]))
"""


def _model(name: str, trainer: dict[str, Any], serving: bool) -> dict[str, Any]:
    return {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "EdgeModel",
        "metadata": {"name": name},
        "spec": {
            "training": {
                "datasetRef": {"name": "motions"},
                "trainer": trainer,
                "exports": ["onnx"],
                "backoffLimit": 0,
            },
            "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
            "gates": {"absolute": [{"metric": "accuracy", "op": ">=", "threshold": FLOOR}]},
            "retrain": {"onDrift": {"enabled": False}},
            "promotion": {"mode": "Auto", "rolloutTemplate": {"steps": [{"percent": 100}]}},
            "serving": {"enabled": serving},
        },
    }


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    namespace = cluster.namespace("forge")
    cluster.motions_dataset(namespace)
    forged_metrics = _model(
        "forged-metrics",
        {
            "image": "ghcr.io/edgeops/trainer:tenant-build",
            "command": ["python", "-c", FORGE_METRICS],
            "hyperparameters": {"epochs": 1, "batchSize": 8, "seed": 7, "learningRate": 1e-5},
        },
        serving=False,
    )
    forged_model = _model("forged-model", {"command": ["python", "-c", FORGE_MODEL]}, serving=True)
    int8_fails = _model(
        "int8-fails",
        {
            "command": ["python", "-c", FORCE_INT8_FAILURE],
            "hyperparameters": {"epochs": 1, "batchSize": 8, "seed": 7},
        },
        serving=False,
    )
    int8_fails["spec"]["training"]["exports"] = ["onnx", "tflite-int8"]
    int8_fails["spec"]["gates"] = {"requireInt8AccuracyWithin": 0.05}
    for manifest in (forged_metrics, forged_model, int8_fails):
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    yield namespace
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _version(cluster: Cluster, ns: str, model: str) -> dict[str, Any] | None:
    status = cluster.get("edgemodel", model, "-n", ns).get("status") or {}
    return next((v for v in status.get("versions") or [] if v["number"] == 1), None)


def _nothing_signed(cluster: Cluster, ns: str, model: str, version: dict[str, Any]) -> None:
    assert not version.get("signature"), version
    body = cluster.get("edgemodel", model, "-n", ns)
    uid = body["metadata"]["uid"]
    prefix = f"models/{ns}/{model}/{uid}/versions/1/"
    assert cluster.store().list(prefix) == [], "no bundle of a forged version is written"
    status = body["status"]
    assert not status.get("currentVersion") and not status.get("candidateVersion")
    assert cluster.get("fleetrollouts", "-n", ns)["items"] == []


def test_forged_metrics_are_measured_and_rejected(cluster: Cluster, ns: str) -> None:
    version: dict[str, Any] = wait_for(
        lambda: _version(cluster, ns, "forged-metrics"), 420, "forged-metrics v1"
    )
    run = cluster.get("trainingrun", version["trainingRun"], "-n", ns)
    status = run["status"]
    assert status["phase"] == "Succeeded", condition(status, "Succeeded")
    measured = status["metrics"]["overall"]["accuracy"]
    assert measured < FLOOR, status["metrics"]
    assert status["metrics"]["overall"]["onnx_accuracy"] == pytest.approx(measured, abs=0.05)
    assert status["evaluation"]["uri"].startswith("s3://")
    succeeded = condition(status, "Succeeded")
    assert succeeded["reason"] == "Evaluated", succeeded
    assert f"trainer reported accuracy={CLAIMED:.4f} (not trusted)" in succeeded["message"]

    # The evaluator ran from EdgeOps's image in the operator's namespace, not the tenant's.
    jobs = cluster.get(
        "jobs", "-n", "edgeops-system", "-l", f"edgeops.dev/training-run={run['metadata']['name']}"
    )["items"]
    evaluation = [
        j for j in jobs if j["metadata"]["labels"].get("edgeops.dev/training-run-namespace") == ns
    ]
    assert len(evaluation) == 1, jobs
    container = evaluation[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"ghcr.io/edgeops/trainer:{__version__}"
    assert container["command"] == ["python", "-m", "edgeops.training.evaluate"]
    tenant_jobs = cluster.get("jobs", "-n", ns)["items"]
    assert all(j["metadata"]["labels"]["edgeops.dev/job-role"] == "train" for j in tenant_jobs)

    assert version["state"] == "Rejected", version
    floor = next(c for c in version["gates"]["checks"] if c["name"] == "absolute/accuracy")
    assert floor["value"] == pytest.approx(measured) and not floor["passed"]
    assert version["metrics"]["overall"]["accuracy"] == measured
    _nothing_signed(cluster, ns, "forged-metrics", version)

    # The model card a reviewer reads (run and EdgeModel status) is the evaluator's: the
    # measured accuracy in its metrics table, the forged 0.999 only where it says untrusted.
    (card_ref,) = [a for a in status["artifacts"] if a["format"] == "model-card"]
    assert card_ref in version["artifacts"]
    card = cluster.store().get_blob(card_ref["sha256"]).decode()
    trusted, untrusted = card.split(UNTRUSTED_HEADING)
    assert f"| accuracy | {measured:.4f} |" in trusted and f"{CLAIMED:.4f}" not in trusted
    assert f"| accuracy | {CLAIMED:.4f} | {measured:.4f} |" in untrusted


def test_arbitrary_bytes_as_the_model_fail_evaluation(cluster: Cluster, ns: str) -> None:
    version: dict[str, Any] = wait_for(
        lambda: _version(cluster, ns, "forged-model"), 300, "forged-model v1"
    )
    run = cluster.get("trainingrun", version["trainingRun"], "-n", ns)
    status = run["status"]
    assert status["phase"] == "Failed", status
    failed = condition(status, "Succeeded")
    assert failed["reason"] == "EvaluationFailed", failed
    assert "onnx: the runtime cannot run it" in failed["message"], failed
    assert "metrics" not in status or not status["metrics"], status
    assert version["state"] == "Rejected", version
    assert "the runtime cannot run it" in version["reason"], version
    _nothing_signed(cluster, ns, "forged-model", version)
    model_status = cluster.get("edgemodel", "forged-model", "-n", ns)["status"]
    assert condition(model_status, "Serving")["reason"] == "NoVersion"
    assert not cluster.get("inferenceservice.serving.kserve.io", "forged-model", "-n", ns)
    assert "EvaluationFailed" in {e["reason"] for e in cluster.events(ns, run["metadata"]["name"])}


def test_a_failed_int8_check_is_a_failed_gate_with_its_reason(cluster: Cluster, ns: str) -> None:
    version: dict[str, Any] = wait_for(
        lambda: _version(cluster, ns, "int8-fails"), 420, "int8-fails v1"
    )
    run = cluster.get("trainingrun", version["trainingRun"], "-n", ns)
    status = run["status"]
    reason = f"the trainer's export failed: RuntimeError: {XNNPACK}"
    assert status["phase"] == "Succeeded", condition(status, "Succeeded")
    assert status["metrics"]["exportErrors"] == {"tflite-int8": reason}, status["metrics"]
    assert "onnx_accuracy" in status["metrics"]["overall"]
    assert "tflite_int8_accuracy" not in status["metrics"]["overall"]
    assert {a["format"] for a in status["artifacts"]} >= {"onnx"}
    assert "tflite-int8" not in {a["format"] for a in status["artifacts"]}
    succeeded = condition(status, "Succeeded")
    assert f"failed exports (their gates fail): tflite-int8: {reason}" in succeeded["message"]

    assert version["state"] == "Rejected", version
    check = next(c for c in version["gates"]["checks"] if c["name"] == "int8/accuracy")
    assert not check["passed"]
    assert check["message"] == (
        "int8/accuracy: metric tflite_int8_accuracy was not reported by the trainer: "
        f"the tflite-int8 export failed: {reason}"
    )
    messages = [e.get("message", "") for e in cluster.events(ns, "int8-fails")]
    assert any("v1 rejected" in m and XNNPACK in m for m in messages), messages
    _nothing_signed(cluster, ns, "int8-fails", version)
