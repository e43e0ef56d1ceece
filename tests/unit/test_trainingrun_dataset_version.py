"""Which dataset version a TrainingRun trains: pinned, else the one it recorded, else latest."""

from __future__ import annotations

from edgeops.api import TrainingRunSpec
from edgeops.controllers import trainingrun

DATASET = {"spec": {"schema": {"sliceColumns": ["site"]}}, "status": {"latestVersion": "new"}}


def _spec(version: str | None = None) -> TrainingRunSpec:
    ref: dict[str, str] = {"name": "d"} | ({"version": version} if version else {})
    return TrainingRunSpec.model_validate({"datasetRef": ref, "trainer": {}, "exports": ["onnx"]})


def test_a_new_run_trains_the_latest_version() -> None:
    assert trainingrun._resolve_dataset_version(DATASET, "ns", _spec()) == ("new", ["site"])


def test_a_resumed_run_keeps_the_version_its_job_trains() -> None:
    assert trainingrun._resolve_dataset_version(DATASET, "ns", _spec(), "old")[0] == "old"


def test_a_pinned_version_wins() -> None:
    pinned = trainingrun._resolve_dataset_version(DATASET, "ns", _spec("a" * 64), "old")
    assert pinned[0] == "a" * 64
