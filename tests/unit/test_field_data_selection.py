"""A run for drift learns from the field rows collected since the drift: which rows those
are, how much of the training set they make up, what the reference profile is built from,
and which dataset version the operator pins as the baseline."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from edgeops.api.edgemodel import DriftSummary
from edgeops.api.trainingrun import TrainingRunSpec
from edgeops.policy import retrain
from edgeops.policy.training import field_data_message, field_data_used, trainer_config
from edgeops.training import evaluate
from edgeops.training.data import load_selected
from edgeops.training.selection import repeats, select
from tests.unit.test_datasets_ingest import NAME, NS, ROWS, MemoryStore, _collect, _drop


def _rows(prefix: str, n: int, label: str = "a") -> list[dict[str, Any]]:
    return [{"x": float(i), "src": prefix, "y": label} for i in range(n)]


def test_repeats_give_field_rows_at_least_their_share() -> None:
    # 20 field rows against 180 others: 9 copies make 180 of 360 (50 %), 8 only 160 of 340.
    assert repeats(20, 180, 0.5, 100) == 9
    assert 20 * 9 / (20 * 9 + 180) >= 0.5 > 20 * 8 / (20 * 8 + 180)
    # Already a majority, or nothing asked: once each.
    assert repeats(300, 100, 0.5, 10) == 1
    assert repeats(20, 180, 0.0, 10) == 1
    assert repeats(0, 180, 0.5, 10) == 1
    # A handful of rows is never copied without bound.
    assert repeats(2, 1000, 0.9, 10) == 10


def test_field_rows_are_those_the_baseline_lacks_and_make_the_reference() -> None:
    lab, before, since = _rows("lab", 40), _rows("pre", 30), _rows("post", 60, label="b")
    baseline = lab + before
    splits = {"train": lab[:30] + before[:20] + since[:40], "validation": lab[30:] + since[40:50]}
    splits["test"] = before[20:] + since[50:]
    chosen = select(splits, baseline, min_reference_rows=50, weight_share=0.5, max_repeats=10)
    assert chosen.field_rows == {"train": 40, "validation": 10, "test": 10}
    assert chosen.reference_from == "field"
    assert sorted(r["x"] for r in chosen.reference) == sorted(r["x"] for r in since)
    assert {r["src"] for r in chosen.reference} == {"post"}
    # Training keeps every earlier row (no class is forgotten) and repeats the field rows:
    # 50 earlier rows, 40 field rows: 2 copies make 80 of 130 >= 50 %.
    train = chosen.splits["train"]
    assert chosen.repeats == 2 and len(train) == 50 + 80
    assert sum(r["src"] == "post" for r in train) / len(train) >= 0.5
    assert sum(r["src"] != "post" for r in train) == 50
    # Validation and test are untouched, so gates compare like with like.
    assert chosen.splits["validation"] == splits["validation"]
    assert chosen.splits["test"] == splits["test"]
    assert chosen.summary() == {
        "fieldRows": {"train": 40, "validation": 10, "test": 10},
        "repeats": 2,
        "referenceFrom": "field",
        "referenceRows": 60,
        "trainRows": 130,
    }


def test_too_few_field_rows_keep_the_whole_version_as_reference() -> None:
    lab, since = _rows("lab", 40), _rows("post", 5, label="b")
    splits = {"train": lab + since, "validation": [], "test": []}
    chosen = select(splits, lab, min_reference_rows=50, weight_share=0.5, max_repeats=4)
    assert chosen.reference_from == "all" and len(chosen.reference) == 45
    assert chosen.repeats == 4  # 8 copies would be needed for half; capped at 4
    assert len(chosen.splits["train"]) == 40 + 5 * 4


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_drift_run_pins_the_newest_version_published_before_the_drift() -> None:
    drift = DriftSummary.model_validate(
        {"measuredAt": "2026-11-30T10:05:00Z", "driftSince": "2026-11-30T10:00:00Z"}
    )
    versions = [
        ("a" * 64, _at("2026-11-30T09:00:00")),
        ("b" * 64, _at("2026-11-30T09:59:59")),
        ("c" * 64, _at("2026-11-30T10:02:00")),
        ("d" * 64, _at("2026-11-30T10:01:00")),
    ]
    chosen = retrain.field_data("Drift", drift, versions, "c" * 64)
    assert chosen == {"baselineVersion": "b" * 64, "driftSince": "2026-11-30T10:00:00Z"}
    # Pre-drift versions pruned from status: the oldest listed (post-drift) one, never the
    # run's own version.
    assert retrain.field_data("Drift", drift, versions[2:], "c" * 64) == {
        "baselineVersion": "d" * 64,
        "driftSince": "2026-11-30T10:00:00Z",
    }
    assert retrain.field_data("Drift", drift, versions[2:3], "c" * 64) is None
    # Other reasons or no standing drift: the whole version.
    assert retrain.field_data("DataChange", drift, versions, "c" * 64) is None
    assert retrain.field_data("Drift", None, versions, "c" * 64) is None
    calm = DriftSummary.model_validate({"measuredAt": "2026-11-30T10:05:00Z"})
    assert retrain.field_data("Drift", calm, versions, "c" * 64) is None


def test_the_trainer_config_carries_the_runs_field_data() -> None:
    spec = TrainingRunSpec.model_validate(
        {
            "datasetRef": {"name": "d", "version": "c" * 64},
            "exports": ["onnx"],
            "reason": "Drift",
            "fieldData": {"baselineVersion": "b" * 64, "driftSince": "2026-11-30T10:00:00Z"},
        }
    )
    config = trainer_config("ns", "run", "uid", spec, "c" * 64, [])
    assert config["fieldData"] == {
        "baselineVersion": "b" * 64,
        "driftSince": "2026-11-30T10:00:00Z",
        "minReferenceRows": 50,
        "weightShare": 0.5,
        "maxRepeats": 10,
    }
    plain = spec.model_copy(update={"field_data": None})
    assert "fieldData" not in trainer_config("ns", "run", "uid", plain, "c" * 64, [])


@pytest.mark.parametrize("share", [1.0, -0.1])
def test_the_models_refuse_a_share_outside_zero_to_one(share: float) -> None:
    with pytest.raises(ValueError, match=r"weight_share|weightShare"):
        TrainingRunSpec.model_validate(
            {
                "datasetRef": {"name": "d"},
                "exports": ["onnx"],
                "fieldData": {"baselineVersion": "b" * 64, "weightShare": share},
            }
        )


def test_the_trainer_tells_field_rows_apart_in_versions_ingestion_published() -> None:
    """Two versions published by the real ingestion (memory store): the trainer's profile
    for a drift run describes only the rows the second version added, and training holds
    every row of the first plus the field rows repeated."""
    store = MemoryStore()
    # Before the drift: ax = i / 2 for i < 60 (0..29.5); since: ax shifted by +50.
    _drop(store, "a.csv", ROWS)
    baseline = _collect(store).latest["id"]
    shifted = [f"{100 + i},{50 + i * 0.5},walk,a\n" for i in range(40)]
    _drop(store, "b.csv", shifted)
    version = _collect(store).latest["id"]
    field = {"baselineVersion": baseline, "minReferenceRows": 30, "weightShare": 0.5}
    data, profile, summary = load_selected(store, NS, NAME, version, [], field)
    assert summary["referenceFrom"] == "field" and summary["referenceRows"] == 40
    assert sum(summary["fieldRows"].values()) == 40
    document = json.loads(profile)
    assert document["rows"] == 40
    # Every reference value of ax is a shifted one (>= 50): the pre-drift rows are not in it.
    ax = document["features"]["ax"]
    assert (ax["count"], ax["min"], ax["max"]) == (40, 50.0, 69.5)
    old_train = sum(1 for r in data.x_train[:, 0] if r < 50)
    new_train = sum(1 for r in data.x_train[:, 0] if r >= 50)
    assert new_train / (old_train + new_train) >= 0.5 and old_train > 0
    # The baseline gone (retention): all rows, the version's own profile, and it says so.
    missing = {**field, "baselineVersion": "f" * 64}
    _, own, said = load_selected(store, NS, NAME, version, [], missing)
    assert said == {"referenceFrom": "all", "baselineMissing": True}
    assert json.loads(own)["rows"] == 100


def _drift_spec() -> TrainingRunSpec:
    return TrainingRunSpec.model_validate(
        {
            "datasetRef": {"name": "d", "version": "c" * 64},
            "exports": ["onnx"],
            "reason": "Drift",
            "fieldData": {"baselineVersion": "b" * 64, "driftSince": "2026-11-30T10:00:00Z"},
        }
    )


def test_the_runs_status_and_event_say_what_field_data_it_learnt_from() -> None:
    """The trainer's summary (results.json), as the evaluator carries it over, becomes
    status.fieldData with the spec's baseline and a sentence for the Succeeded Event."""
    summary = select(
        {"train": _rows("lab", 40) + _rows("new", 20, "b"), "test": _rows("t", 10)},
        _rows("lab", 40) + _rows("t", 10),
        min_reference_rows=15,
        weight_share=0.5,
        max_repeats=10,
    ).summary()
    # What the evaluator keeps of it: the known keys with their types only.
    reported = evaluate._trainer_field_data({"fieldData": {**summary, "junk": "x" * 9000}})
    assert reported == summary
    used = field_data_used(_drift_spec(), {"trainerReported": {"fieldData": reported}})
    assert used is not None
    assert used.model_dump(by_alias=True, exclude_none=True, mode="json") == {
        "baselineVersion": "b" * 64,
        "driftSince": "2026-11-30T10:00:00Z",
        "fieldRows": 20,
        "trainFieldRows": 20,
        "copies": 2,
        "trainRows": 80,
        "weight": 0.5,
        "referenceFrom": "field",
        "referenceRows": 20,
        "baselineMissing": False,
    }
    assert field_data_message(used) == (
        "drift since 2026-11-30T10:00:00Z: baseline dataset version bbbbbbbbbbbb; 20 field "
        "rows since, 20 in train x2 copies = 50% of 80 training rows, reference profile "
        "from 20 field rows"
    )


def test_a_missing_baseline_or_summary_is_said_and_a_plain_run_has_none() -> None:
    gone = field_data_used(
        _drift_spec(),
        {"trainerReported": {"fieldData": {"referenceFrom": "all", "baselineMissing": True}}},
    )
    assert gone is not None and gone.baseline_missing and gone.field_rows is None
    assert "was deleted, so the run trained on all rows" in field_data_message(gone)
    silent = field_data_used(_drift_spec(), {"trainerReported": {}})
    assert silent is not None and "reported no field-data summary" in field_data_message(silent)
    plain = _drift_spec().model_copy(update={"field_data": None})
    assert field_data_used(plain, {}) is None
    # A trainer's nonsense never reaches the status.
    assert evaluate._trainer_field_data({"fieldData": {"repeats": -3, "referenceFrom": "x"}}) == {}
    assert evaluate._trainer_field_data({"fieldData": [1]}) is None
