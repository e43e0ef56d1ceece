"""The Argo CD health checks (Lua) on the statuses the operator writes: each kind's Healthy,
Progressing, Degraded and Suspended, and a status the operator has not caught up with yet
(observedGeneration behind) always Progressing. The integration tier runs the same scripts
on live objects (tests/integration/test_gitops.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.gitops_health import KINDS, health, scripts

STATUS_DIR = Path(__file__).resolve().parents[2] / "examples" / "sensor-fleet" / "status"
FILES = {
    "Dataset": "dataset.yaml",
    "TrainingRun": "trainingrun.yaml",
    "EdgeModel": "edgemodel.yaml",
    "FleetRollout": "fleetrollout.yaml",
    "Device": "device.yaml",
}


def _example(kind: str, generation: int = 1) -> dict[str, Any]:
    """The example's status of ``kind`` (what the operator reports once the loop ran)."""
    obj = dict(yaml.safe_load((STATUS_DIR / FILES[kind]).read_text()))
    obj["metadata"]["generation"] = generation
    return obj


def _ready(obj: dict[str, Any], status: str, reason: str, message: str = "") -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    ready.update(status=status, reason=reason, message=message)
    return obj


def _with(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["status"].update(status)
    return obj


def test_every_kind_has_a_check() -> None:
    assert sorted(scripts()) == sorted(KINDS)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("Dataset", "Healthy"),
        ("TrainingRun", "Healthy"),
        ("EdgeModel", "Healthy"),
        # The example rollout waits at a manual step.
        ("FleetRollout", "Suspended"),
        ("Device", "Healthy"),
    ],
)
def test_the_examples_settled_status(kind: str, expected: str) -> None:
    status, message = health(_example(kind))
    assert status == expected, message


@pytest.mark.parametrize("kind", KINDS)
def test_a_generation_not_observed_yet_is_progressing(kind: str) -> None:
    status, message = health(_example(kind, generation=2))
    assert (status, message) == ("Progressing", "waiting for the operator to observe generation 2")
    fresh = _example(kind)
    del fresh["status"]
    assert health(fresh)[0] == "Progressing"


def test_dataset() -> None:
    dataset = _example("Dataset")
    assert health(dataset)[1].startswith("version 3f9a2c1e8b7d (Collected")
    failed = _ready(dataset, "False", "StorageUnavailable", "S3 at s3.example: timed out")
    assert health(failed) == ("Degraded", "StorageUnavailable: S3 at s3.example: timed out")
    assert health(_ready(dataset, "False", "NoNewData"))[0] == "Progressing"
    assert health(_ready(dataset, "Unknown", "Reconciling"))[0] == "Progressing"


@pytest.mark.parametrize(
    ("phase", "expected"),
    [("Pending", "Progressing"), ("Running", "Progressing"), ("Failed", "Degraded")],
)
def test_trainingrun(phase: str, expected: str) -> None:
    run = _with(_example("TrainingRun"), phase=phase)
    status, message = health(run)
    assert status == expected and message.startswith(phase + " - ")


@pytest.mark.parametrize(
    ("reason", "ready", "expected"),
    [
        ("Training", "False", "Progressing"),
        ("NoVersion", "False", "Progressing"),
        ("AwaitingApproval", "False", "Suspended"),
        ("GatesFailed", "False", "Degraded"),
        ("TrainingFailed", "False", "Degraded"),
        ("InvalidSpec", "False", "Degraded"),
    ],
)
def test_edgemodel(reason: str, ready: str, expected: str) -> None:
    model = _ready(_example("EdgeModel"), ready, reason, "accuracy 0.81 < 0.9")
    status, message = health(model)
    assert status == expected
    assert message.startswith("v1 current - ") and "accuracy 0.81 < 0.9" in message


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Pending", "Progressing"),
        ("Progressing", "Progressing"),
        ("Paused", "Suspended"),
        ("Succeeded", "Healthy"),
        ("Aborted", "Degraded"),
        ("RolledBack", "Degraded"),
    ],
)
def test_fleetrollout(phase: str, expected: str) -> None:
    status, message = health(_with(_example("FleetRollout"), phase=phase))
    assert status == expected and message.startswith(f"{phase} at 50% - ")


@pytest.mark.parametrize(
    ("ready", "reason", "fields", "expected"),
    [
        ("False", "EnrollmentPending", {"enrollment": "Pending"}, "Suspended"),
        ("False", "Decommissioned", {"enrollment": "Revoked"}, "Suspended"),
        ("False", "EnrollmentRejected", {"enrollment": "Rejected"}, "Degraded"),
        ("Unknown", "NeverSeen", {"health": None}, "Progressing"),
        ("Unknown", "NotSeen", {"health": "Unknown"}, "Degraded"),
        ("True", "Degraded", {"health": "Degraded"}, "Degraded"),
        ("False", "Unhealthy", {"health": "Unhealthy"}, "Degraded"),
        ("False", "UpdateRolledBack", {}, "Degraded"),
        ("Unknown", "HealthNotReported", {"health": None}, "Progressing"),
    ],
)
def test_device(ready: str, reason: str, fields: dict[str, Any], expected: str) -> None:
    device = _with(_ready(_example("Device"), ready, reason), **fields)
    device["status"] = {k: v for k, v in device["status"].items() if v is not None}
    status, message = health(device)
    assert status == expected, message
    assert reason in message
