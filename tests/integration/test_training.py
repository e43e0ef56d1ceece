"""TrainingRuns end to end: real Job controller, local node, TensorFlow trainer, MinIO."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeops.api.trainingrun import TrainingRunSpec
from edgeops.devcluster import processes
from edgeops.policy import training
from edgeops.training.data import load_version
from edgeops.training.exports import run_tflite
from tests.conftest import Cluster, condition, wait_for

pytestmark = pytest.mark.integration
tf = pytest.importorskip("tensorflow", reason="the train extra is needed to check the exports")
ort = pytest.importorskip("onnxruntime")


#: Labels making the API server's PodSecurity admission enforce ``restricted``.
RESTRICTED = (
    "pod-security.kubernetes.io/enforce=restricted",
    "pod-security.kubernetes.io/enforce-version=latest",
)


def run_manifest(name: str, **trainer: Any) -> str:
    spec: dict[str, Any] = {
        "datasetRef": {"name": "motions"},
        "trainer": {"hyperparameters": {"epochs": 60, "batchSize": 8, "seed": 7}, **trainer},
        "exports": ["onnx", "tflite", "tflite-int8", "tflm"],
        "backoffLimit": 0,
    }
    for key in ("backoffLimit", "activeDeadlineSeconds"):
        if key in trainer:
            spec[key] = spec["trainer"].pop(key)
    return json.dumps(
        {
            "apiVersion": "edgeops.dev/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def _finished(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    run = cluster.get("trainingrun", name, "-n", ns)
    status = run.get("status") or {}
    return status if status.get("phase") in ("Succeeded", "Failed") else None


@pytest.fixture(scope="module")
def trained(cluster: Cluster) -> dict[str, Any]:
    """One namespace with the dataset and a successful run, shared by the checks below.
    The namespace enforces the Pod Security Standard ``restricted``: the trainer's pods
    must be admitted under it."""
    ns = cluster.namespace("train")
    cluster.kubectl("label", "namespace", ns, *RESTRICTED)
    version = cluster.motions_dataset(ns)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=run_manifest("good"))
    status = wait_for(lambda: _finished(cluster, ns, "good"), 420, "run good to finish")
    return {"ns": ns, "version": version, "status": status}


def test_run_succeeds_with_metrics_artifacts_and_lineage(
    cluster: Cluster, trained: dict[str, Any]
) -> None:
    ns, status = trained["ns"], trained["status"]
    assert status["phase"] == "Succeeded", condition(status, "Succeeded")
    assert status["jobName"] == "good-train"
    assert status["datasetVersion"] == trained["version"]
    assert len(status["codeVersion"]["configHash"]) == 64
    assert status["codeVersion"]["image"].startswith("ghcr.io/edgeops/trainer:")
    overall = status["metrics"]["overall"]
    assert overall["accuracy"] > 0.7, overall
    formats = {a["format"] for a in status["artifacts"]}
    assert {
        "onnx",
        "tflite",
        "tflite-int8",
        "tflm",
        "savedmodel",
        "model-card",
        "reference-profile",
    } <= formats
    assert all(len(a["sha256"]) == 64 and a["size"] > 0 for a in status["artifacts"])
    assert status["startTime"] and status["completionTime"]
    succeeded = condition(status, "Succeeded")
    assert succeeded["status"] == "True" and "accuracy=" in succeeded["message"]
    jobs = cluster.get("jobs", "-n", ns)["items"]
    assert [j["metadata"]["name"] for j in jobs] == ["good-train"]
    owner = jobs[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "TrainingRun" and owner["name"] == "good"
    logs = cluster.kubectl("logs", "-n", ns, "job/good-train").stdout
    assert "epoch 60/60" in logs and "results published" in logs
    pod = jobs[0]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def _pod_from(job: dict[str, Any], name: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": job["spec"]["template"]["spec"],
    })  # fmt: skip


def test_trainer_and_evaluator_pods_pass_the_restricted_pod_security_standard(
    cluster: Cluster,
) -> None:
    """The evaluator runs in the operator's namespace (not a tenant's), so its pod is
    checked by a server-side dry run in a namespace enforcing ``restricted``; the same pod
    without its securityContext is refused, so the check is the API server's, not ours."""
    ns = cluster.namespace("pss")
    cluster.kubectl("label", "namespace", ns, *RESTRICTED)
    run = {"metadata": {"name": "r", "namespace": ns, "uid": "0" * 8}}
    spec = TrainingRunSpec.model_validate({"datasetRef": {"name": "d"}, "exports": ["onnx"]})
    config = training.evaluation_config(ns, "r", "0" * 8, spec, "a" * 64, [])
    jobs = {
        "trainer": training.job(run, spec, "ghcr.io/edgeops/trainer:1", "http://s3", "b"),
        "evaluator": training.evaluation_job(run, config, "ghcr.io/edgeops/trainer:1",
                                             "http://s3", "b"),
    }  # fmt: skip
    for role, job in jobs.items():
        admitted = cluster.kubectl(
            "create", "--dry-run=server", "-n", ns, "-f", "-",
            input=_pod_from(job, role), check=False,
        )  # fmt: skip
        assert admitted.returncode == 0, (role, admitted.stderr)
        loose = json.loads(_pod_from(job, role))
        del loose["spec"]["securityContext"]
        refused = cluster.kubectl(
            "create", "--dry-run=server", "-n", ns, "-f", "-", input=json.dumps(loose),
            check=False,
        )  # fmt: skip
        assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, role


def test_exports_agree_with_the_keras_model(
    cluster: Cluster, trained: dict[str, Any], tmp_path: Path
) -> None:
    store = cluster.store()
    artifacts = {a["format"]: a for a in trained["status"]["artifacts"]}
    blobs = {}
    for fmt, art in artifacts.items():
        blob = store.get_blob(art["sha256"])  # verifies the content hash
        assert hashlib.sha256(blob).hexdigest() == art["sha256"] and len(blob) == art["size"]
        blobs[fmt] = blob
    data, _ = load_version(store, trained["ns"], "motions", trained["version"], [])
    x, y = data.x_test, data.y_test

    with tarfile.open(fileobj=io.BytesIO(blobs["savedmodel"])) as tar:
        tar.extractall(tmp_path, filter="data")
    keras_layer = tf.keras.layers.TFSMLayer(str(tmp_path / "saved_model"), call_endpoint="serve")
    keras_probs = np.asarray(keras_layer(x))

    session = ort.InferenceSession(blobs["onnx"], providers=["CPUExecutionProvider"])
    onnx_probs = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.abs(onnx_probs - keras_probs).max() < 1e-4
    assert (onnx_probs.argmax(1) == keras_probs.argmax(1)).all()

    float_acc = float((run_tflite(blobs["tflite"], x).argmax(1) == y).mean())
    int8_acc = float((run_tflite(blobs["tflite-int8"], x).argmax(1) == y).mean())
    keras_acc = float((keras_probs.argmax(1) == y).mean())
    print(f"keras={keras_acc:.4f} tflite={float_acc:.4f} int8={int8_acc:.4f}")
    assert abs(float_acc - keras_acc) < 1e-9
    assert keras_acc - int8_acc <= 0.02, (keras_acc, int8_acc)
    overall = trained["status"]["metrics"]["overall"]
    assert overall["tflite_int8_accuracy"] == pytest.approx(int8_acc)

    with tarfile.open(fileobj=io.BytesIO(blobs["tflm"])) as tar:
        source = tar.extractfile("tflm/model_data.cc").read().decode()  # type: ignore[union-attr]
    from edgeops.training.tflm import parse_c_array

    assert parse_c_array(source) == blobs["tflite-int8"]
    card = blobs["model-card"].decode()
    assert trained["version"] in card and "## Limitations" in card


def test_bad_config_fails_after_retries_with_the_reason(
    cluster: Cluster, trained: dict[str, Any]
) -> None:
    ns = trained["ns"]
    manifest = run_manifest("typo", config={"widht": 64}, backoffLimit=1)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    status = wait_for(lambda: _finished(cluster, ns, "typo"), 240, "run typo to fail")
    assert status["phase"] == "Failed"
    failed = condition(status, "Succeeded")
    assert failed["status"] == "False" and failed["reason"] == "BackoffLimitExceeded"
    assert "unknown trainer config key(s) 'widht'" in failed["message"]
    assert "exit codes 2, 2" in failed["message"]  # first try + one retry
    assert "BackoffLimitExceeded" in {e["reason"] for e in cluster.events(ns, "typo")}


def test_run_past_its_deadline_fails_with_deadline_exceeded(
    cluster: Cluster, trained: dict[str, Any]
) -> None:
    ns = trained["ns"]
    manifest = run_manifest(
        "slow", command=["python", "-c", "import time; time.sleep(120)"], activeDeadlineSeconds=4
    )
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    status = wait_for(lambda: _finished(cluster, ns, "slow"), 120, "run slow to hit its deadline")
    failed = condition(status, "Succeeded")
    assert status["phase"] == "Failed" and failed["reason"] == "DeadlineExceeded"
    assert "activeDeadlineSeconds=4" in failed["message"]


def test_an_image_the_node_cannot_run_is_the_runs_reason(
    cluster: Cluster, trained: dict[str, Any]
) -> None:
    ns = trained["ns"]
    manifest = run_manifest("foreign", image="docker.io/library/busybox:1.36")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    stuck = wait_for(
        lambda: (
            (s := cluster.get("trainingrun", "foreign", "-n", ns).get("status") or {})
            and (s.get("conditions") or [])
            and condition(s, "Succeeded")["reason"] == "ImageNotRunnableLocally"
            and s
        ),
        90,
        "the run to report the image problem",
    )
    assert stuck["phase"] == "Pending"
    assert "busybox" in condition(stuck, "Succeeded")["message"]
    cluster.kubectl("delete", "trainingrun", "foreign", "-n", ns)


def test_operator_restart_mid_job_yields_one_job_and_a_final_status(
    cluster: Cluster, trained: dict[str, Any]
) -> None:
    ns = trained["ns"]
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=run_manifest("restart"))
    wait_for(
        lambda: (
            (cluster.get("trainingrun", "restart", "-n", ns).get("status") or {}).get("phase")
            == "Running"
        ),
        120,
        "run restart to be Running",
    )
    comp = json.loads(cluster.dev.state_file.read_text())["components"]["operator"]
    assert processes.stop(int(comp["pid"]), comp["argv0"])
    time.sleep(2)
    cluster.dev.up(with_operator=True, report=lambda m: None)
    status = wait_for(lambda: _finished(cluster, ns, "restart"), 420, "run restart to finish")
    assert status["phase"] == "Succeeded"
    jobs = cluster.get("jobs", "-n", ns, "-l", "edgeops.dev/training-run=restart")["items"]
    assert len(jobs) == 1
    pods = cluster.get("pods", "-n", ns, "-l", "edgeops.dev/training-run=restart")["items"]
    assert len(pods) == 1


def test_a_job_deleted_mid_run_is_recreated_and_the_run_finishes(
    cluster: Cluster, trained: dict[str, Any]
) -> None:
    ns = trained["ns"]
    # A few epochs: what is checked is the recreated Job, not the model (60 epochs: `good`).
    few = {"epochs": 5, "batchSize": 8, "seed": 7}
    manifest = run_manifest("orphaned", hyperparameters=few)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    wait_for(lambda: cluster.get("job", "orphaned-train", "-n", ns), 60, "the Job")
    cluster.kubectl("delete", "job", "orphaned-train", "-n", ns, "--wait=true")
    status = wait_for(lambda: _finished(cluster, ns, "orphaned"), 420, "run orphaned to finish")
    assert status["phase"] == "Succeeded"
    assert "JobRecreated" in {e["reason"] for e in cluster.events(ns, "orphaned")}


def test_deleting_a_run_deletes_its_job_but_keeps_artifacts(
    cluster: Cluster, trained: dict[str, Any]
) -> None:
    ns = trained["ns"]
    store = cluster.store()
    onnx = next(a for a in trained["status"]["artifacts"] if a["format"] == "onnx")
    cluster.kubectl("delete", "trainingrun", "good", "-n", ns)
    wait_for(
        lambda: cluster.kubectl("get", "job", "good-train", "-n", ns, check=False).returncode != 0,
        60,
        "the Job to be collected",
    )
    assert store.get_blob(onnx["sha256"])
