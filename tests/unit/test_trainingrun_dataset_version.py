"""Which dataset version a TrainingRun trains: pinned, else the one it recorded, else latest."""

from __future__ import annotations

from typing import Any

import pytest

from edgeops.api import TrainingRunSpec
from edgeops.controllers import trainingrun

DATASET = {"spec": {"schema": {"sliceColumns": ["site"]}}, "status": {"latestVersion": "new"}}


@pytest.fixture(autouse=True)
def _dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    def read(*_: Any) -> dict[str, Any]:
        return DATASET

    monkeypatch.setattr(trainingrun.custom, "read", read)


def _spec(version: str | None = None) -> TrainingRunSpec:
    ref: dict[str, str] = {"name": "d"} | ({"version": version} if version else {})
    return TrainingRunSpec.model_validate({"datasetRef": ref, "trainer": {}, "exports": ["onnx"]})


def test_a_new_run_trains_the_latest_version() -> None:
    assert trainingrun._resolve_dataset_version("ns", _spec()) == ("new", ["site"])


def test_a_resumed_run_keeps_the_version_its_job_trains() -> None:
    assert trainingrun._resolve_dataset_version("ns", _spec(), "old")[0] == "old"


def test_a_pinned_version_wins() -> None:
    assert trainingrun._resolve_dataset_version("ns", _spec("a" * 64), "old")[0] == "a" * 64
