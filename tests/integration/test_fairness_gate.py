"""The EdgeModel fairness gate on the devcluster: a model that is accurate for one site and
at chance for the other is rejected, with the per-slice numbers behind the verdict.

The data is built here: at site `a` the label is a clean function of the features, at site
`b` it is seeded noise. The site is not a feature, so the trained model cannot do better
than chance at `b`, and the per-slice accuracy gap is far above the gate's threshold.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster, condition, wait_for

pytestmark = pytest.mark.integration

MODEL = "fair"
DATASET = "sites"
MAX_GAP = 0.15
ACCURACY_FLOOR = 0.3  # lenient: only the fairness gate should fail
SITE_A_ROWS = 360
SITE_B_ROWS = 240
SEED = 1234


def _csv() -> bytes:
    """Deterministic rows: `label` is `pos` iff x1 + x2 > 0 at site a (points near the
    boundary are left out, so it is cleanly learnable) and a seeded coin flip at site b."""
    rng = random.Random(SEED)
    lines = ["id,x1,x2,site,label"]
    row_id = 0
    while row_id < SITE_A_ROWS:
        x1, x2 = round(rng.uniform(-1, 1), 3), round(rng.uniform(-1, 1), 3)
        if abs(x1 + x2) < 0.2:
            continue
        lines.append(f"{row_id},{x1},{x2},a,{'pos' if x1 + x2 > 0 else 'neg'}")
        row_id += 1
    for _ in range(SITE_B_ROWS):
        x1, x2 = round(rng.uniform(-1, 1), 3), round(rng.uniform(-1, 1), 3)
        lines.append(f"{row_id},{x1},{x2},b,{rng.choice(['pos', 'neg'])}")
        row_id += 1
    return ("\n".join(lines) + "\n").encode()


def _dataset(prefix: str) -> dict[str, Any]:
    return {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": DATASET},
        "spec": {
            "sources": [{"s3": {"prefix": prefix}}],
            "format": "csv",
            "schema": {
                "features": [
                    {"name": "x1", "type": "float", "min": -1, "max": 1},
                    {"name": "x2", "type": "float", "min": -1, "max": 1},
                ],
                "label": "label",
                "sliceColumns": ["site"],
                "rowKey": ["id"],
            },
            "split": {"train": 0.6, "validation": 0.2, "test": 0.2},
            "governance": {"classification": "internal", "retentionDays": 30},
        },
    }


EDGE_MODEL: dict[str, Any] = {
    "apiVersion": "edgeops.dev/v1alpha1",
    "kind": "EdgeModel",
    "metadata": {"name": MODEL},
    "spec": {
        "training": {
            "datasetRef": {"name": DATASET},
            "trainer": {"hyperparameters": {"epochs": 30, "batchSize": 16, "seed": 7}},
            "exports": ["onnx"],
            "backoffLimit": 0,
        },
        "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
        "gates": {
            "absolute": [{"metric": "accuracy", "op": ">=", "threshold": ACCURACY_FLOOR}],
            "maxFairnessGap": MAX_GAP,
            "fairnessMetric": "accuracy",
        },
        "retrain": {"onDrift": {"enabled": False}},
        "promotion": {"mode": "Manual"},
        "serving": {"enabled": False},
    },
}


def _status(cluster: Cluster, ns: str) -> dict[str, Any]:
    return cluster.get("edgemodel", MODEL, "-n", ns).get("status") or {}


def _version(cluster: Cluster, ns: str, number: int) -> dict[str, Any] | None:
    versions = _status(cluster, ns).get("versions") or []
    return next((v for v in versions if v["number"] == number), None)


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    namespace = cluster.namespace("fair")
    prefix = f"raw/{namespace}/{DATASET}/"
    cluster.store().put_bytes(f"{prefix}part-0.csv", _csv(), content_type="text/csv")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_dataset(prefix)))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(EDGE_MODEL))
    yield namespace
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_unfair_version_is_rejected_with_the_per_slice_numbers(cluster: Cluster, ns: str) -> None:
    def published() -> dict[str, Any] | None:
        status = cluster.get("dataset", DATASET, "-n", ns).get("status") or {}
        return status if status.get("latestVersion") else None

    dataset: dict[str, Any] = wait_for(published, 60, "the dataset's first version")
    assert dataset["versions"][-1]["sampleCount"] == SITE_A_ROWS + SITE_B_ROWS, dataset

    v1: dict[str, Any] = wait_for(lambda: _version(cluster, ns, 1), 300, "version 1")
    run = cluster.get("trainingrun", v1["trainingRun"], "-n", ns)
    assert run["status"]["phase"] == "Succeeded", run["status"]  # rejected by gates, not failed
    assert v1["state"] == "Rejected", v1
    assert v1["datasetVersion"] == dataset["latestVersion"]

    # The per-slice test accuracy the trainer reported, as registered with the version.
    per_slice = [s for s in v1["metrics"]["perSlice"] if s["column"] == "site"]
    accuracy = {s["value"]: s["metrics"]["accuracy"] for s in per_slice}
    assert set(accuracy) == {"a", "b"}, per_slice
    assert all(s["samples"] >= 5 for s in per_slice), per_slice
    assert accuracy["a"] >= 0.8, accuracy  # learnable site: the model did learn it
    assert run["status"]["metrics"]["perSlice"] == v1["metrics"]["perSlice"]
    gap = max(accuracy.values()) - min(accuracy.values())
    assert gap > MAX_GAP, accuracy
    # The trainer's own fairness gap agrees with the operator's gate.
    assert v1["metrics"]["overall"]["fairness_gap"] == pytest.approx(gap, abs=1e-6)

    checks = {c["name"]: c for c in v1["gates"]["checks"]}
    assert v1["gates"]["passed"] is False
    fairness = checks["fairness/accuracy"]
    assert fairness["passed"] is False and fairness["metric"] == "accuracy"
    assert fairness["value"] == pytest.approx(gap, abs=1e-6)
    assert fairness["threshold"] == MAX_GAP and fairness["op"] == "<="
    assert f"accuracy gap {gap:.4g}" in fairness["message"], fairness
    assert "site=a vs site=b" in fairness["message"], fairness
    assert f"not <= {MAX_GAP:g}" in fairness["message"], fairness
    # Only fairness failed: the accuracy floor is met, so the rejection is about the gap.
    assert [name for name, c in checks.items() if not c["passed"]] == ["fairness/accuracy"]
    assert checks["absolute/accuracy"]["value"] >= ACCURACY_FLOOR
    assert fairness["message"] in v1["reason"]

    status = _status(cluster, ns)
    gates = condition(status, "GatesPassed")
    assert gates["status"] == "False" and gates["reason"] == "GatesFailed", gates
    assert "v1" in gates["message"] and fairness["message"] in gates["message"], gates
    assert not status.get("currentVersion"), "a rejected version never becomes current"
    assert not status.get("candidateVersion"), "a rejected version is no candidate"
    assert status["latestVersion"] == 1

    # Kopf posts Events asynchronously: the status can land before the Event does.
    def rejection_event() -> dict[str, Any] | None:
        events = cluster.events(ns, MODEL)
        return next((e for e in events if e["reason"] == "GatesFailed"), None)

    event: dict[str, Any] = wait_for(rejection_event, 30, "a GatesFailed Event")
    assert event["type"] == "Warning", event
    assert "v1 rejected" in event["message"] and fairness["message"] in event["message"], event
    assert cluster.get("fleetrollouts", "-n", ns)["items"] == []
