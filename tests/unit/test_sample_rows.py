"""Device sample rows for a Dataset inbox (edgeops.policy.samples): validation against the
schema with the row index and field named, the JSON Lines object named by its content, the
per-device row budget, and that what the gateway writes is what a collection accepts."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from edgeops.api import DatasetSpec, ValidationRules
from edgeops.api.dataset import DatasetSchema
from edgeops.api.wire import SampleRow, SampleUpload
from edgeops.datasets import layout
from edgeops.datasets.ingest import Outcome, collect
from edgeops.gateway.limits import RowBudget
from edgeops.policy.samples import (
    InvalidSampleError,
    MissingDeviceLabelError,
    dataset_inbox,
    extra_columns,
    inbox_object,
    sample_records,
    source_inbox_prefix,
)
from tests.unit.test_datasets_ingest import MemoryStore

NS, NAME = "team", "imu"
SCHEMA = DatasetSchema.model_validate(
    {
        "features": [
            {"name": "ax", "type": "float", "min": -20, "max": 20},
            {"name": "steps", "type": "int", "min": 0},
            {"name": "mode", "type": "string", "nullable": True},
            {"name": "moving", "type": "bool"},
        ],
        "label": "label",
        "sliceColumns": ["site"],
    }
)
RULES = ValidationRules()
LABELS = {"site": "berlin", "edgeops.dev/model": "m"}


def _row(label: str | None = "walk", **features: Any) -> SampleRow:
    values = {"ax": 1.5, "steps": 3, "mode": "x", "moving": True, **features}
    return SampleRow.model_validate({"features": values, "label": label, "confidence": 0.4})


def _fails(row: SampleRow, schema: DatasetSchema = SCHEMA, rules: ValidationRules = RULES) -> str:
    with pytest.raises(InvalidSampleError) as caught:
        sample_records([_row(), row], schema, rules, LABELS)
    assert caught.value.row == 1
    return str(caught.value)


def test_a_valid_row_becomes_features_label_and_slice_columns() -> None:
    records = sample_records([_row(ax=2, steps=4.0, mode=None)], SCHEMA, RULES, LABELS)
    assert records == [
        {"ax": 2.0, "steps": 4, "mode": None, "moving": True, "label": "walk", "site": "berlin"}
    ]
    assert isinstance(records[0]["ax"], float) and isinstance(records[0]["steps"], int)
    # What the model said (prediction, confidence, reason) is not a column of the Dataset.
    assert "confidence" not in records[0]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (_row(gyro=1.0), "rows[1].features.gyro: not a feature of the schema"),
        (SampleRow(features={"ax": 1.0, "steps": 1, "moving": True}, label="walk"),
         "rows[1].features.mode: missing"),
        (_row(ax="1.5"), "rows[1].features.ax: must be a number (float)"),
        (_row(ax=True), "rows[1].features.ax: must be a number (float)"),
        (_row(ax=25.0), "rows[1].features.ax: outside [-20, 20]"),
        (_row(ax=float("inf")), "rows[1].features.ax: must be finite"),
        (_row(ax=None), "rows[1].features.ax: has no value and the feature is not nullable"),
        (_row(steps=1.5), "rows[1].features.steps: must be an integer"),
        (_row(steps=-1), "rows[1].features.steps: outside [0, inf]"),
        (_row(steps=2**60), "rows[1].features.steps: must be within"),
        (_row(mode=3), "rows[1].features.mode: must be a string"),
        (_row(moving="yes"), "rows[1].features.moving: must be true or false"),
        (_row(moving=" "), "rows[1].features.moving: has no value"),
        (_row(moving="NA"), "rows[1].features.moving: must be true or false"),  # not declared
        (_row(label=None), "rows[1].label: required: the Dataset is labelled"),
        (_row(label=" "), "rows[1].label: required"),
    ],
)  # fmt: skip
def test_an_invalid_row_is_named_by_index_and_field(row: SampleRow, message: str) -> None:
    assert message in _fails(row)


def test_only_declared_tokens_are_missing_na_is_a_value() -> None:
    """Issue 16.5, mirrored at upload: 'NA' (Namibia) is a value unless declared."""
    schema = DatasetSchema.model_validate(
        {
            "features": [
                {"name": "country", "type": "string"},
                {"name": "ax", "type": "float", "nullable": True, "missingTokens": ["NA"]},
            ],
            "label": "label",
        }
    )
    records = sample_records([_row_of(country="NA", ax="NA", label="nan")], schema, RULES, LABELS)
    assert records == [{"country": "NA", "ax": None, "label": "nan"}]


def _row_of(label: str, **features: Any) -> SampleRow:
    return SampleRow.model_validate({"features": features, "label": label})


def test_the_datasets_rules_decide_missing_values_and_ranges() -> None:
    lenient = ValidationRules(missing_values="FillMean", range_checks=False)
    records = sample_records([_row(ax=None), _row(ax=99.0)], SCHEMA, lenient, LABELS)
    assert [r["ax"] for r in records] == [None, 99.0]  # the collection imputes the first


def test_an_unlabelled_dataset_takes_rows_with_or_without_a_label() -> None:
    schema = SCHEMA.model_copy(update={"label": None, "slice_columns": None})
    records = sample_records([_row(label=None), _row()], schema, RULES, {})
    assert all(set(r) == {"ax", "steps", "mode", "moving"} for r in records)


def test_slice_and_row_key_columns_come_from_the_device_labels() -> None:
    schema = SCHEMA.model_copy(update={"row_key": ["device", "ax"]})
    assert extra_columns(schema) == ["site", "device"]  # ax is a feature
    with pytest.raises(MissingDeviceLabelError, match="'device'"):
        sample_records([_row()], schema, RULES, LABELS)
    records = sample_records([_row()], schema, RULES, {**LABELS, "device": "d1"})
    assert (records[0]["site"], records[0]["device"]) == ("berlin", "d1")
    with pytest.raises(MissingDeviceLabelError, match="'site'"):
        sample_records([_row()], SCHEMA, RULES, {"site": ""})


def test_the_object_is_json_lines_named_by_its_content() -> None:
    prefix = source_inbox_prefix(NS, NAME, None)
    records = sample_records([_row(), _row(ax=-3.25, label="run")], SCHEMA, RULES, LABELS)
    obj = inbox_object(prefix, records)
    assert obj.sha256 == hashlib.sha256(obj.data).hexdigest()
    assert obj.key == f"inbox/{NS}/{NAME}/{obj.sha256}.jsonl"
    lines = obj.data.decode().splitlines()
    assert [json.loads(line) for line in lines] == records
    assert obj.data.endswith(b"\n")
    assert inbox_object(prefix, records) == obj  # a retry: the same key, the same bytes
    assert inbox_object(prefix, records[:1]).key != obj.key
    for bad in ("datasets/team/imu/", "inbox/team/../other/", "inbox/team/imu"):
        with pytest.raises(ValueError):
            inbox_object(bad, records)


def test_an_inbox_stays_in_its_namespace() -> None:
    assert source_inbox_prefix(NS, NAME, "inbox/team/shared/") == "inbox/team/shared/"
    for prefix in ("inbox/other/imu/", "inbox/teammate/imu/", "inbox/team/../x/"):
        with pytest.raises(ValueError, match="outside this namespace's inbox"):
            source_inbox_prefix(NS, NAME, prefix)
    spec = DatasetSpec.model_validate(
        {
            "sources": [{"builtin": {"name": "digits"}}, {"inbox": {}}],
            "schema": SCHEMA.model_dump(by_alias=True, exclude_none=True),
            "governance": {"classification": "internal"},
        }
    )
    assert dataset_inbox(NS, NAME, spec) == f"inbox/{NS}/{NAME}/"
    assert dataset_inbox(NS, NAME, spec.model_copy(update={"sources": spec.sources[:1]})) is None


def test_uploaded_rows_are_what_a_csv_datasets_collection_accepts() -> None:
    """The gateway's objects are JSON Lines; a Dataset whose files are CSV still reads
    them from its inbox, next to CSV files, and rejects none of their rows."""
    spec = DatasetSpec.model_validate(
        {
            "sources": [{"inbox": {}}],
            "format": "csv",
            "schema": SCHEMA.model_dump(by_alias=True, exclude_none=True),
            "governance": {"classification": "internal"},
            "validation": {"maxRejectedFraction": 0},
        }
    )
    store = MemoryStore()
    prefix = dataset_inbox(NS, NAME, spec)
    assert prefix is not None and spec.data_schema is not None
    store.put_bytes(prefix + "by-hand.csv", b"ax,steps,mode,moving,label,site\n0.5,1,,true,run,x\n")
    upload = SampleUpload.model_validate(
        {
            "sequence": 1,
            "model": "m",
            "version": 1,
            "rows": [
                {"features": {"ax": i / 4, "steps": i, "mode": None, "moving": i % 2 == 0},
                 "label": "walk" if i % 3 else "run", "prediction": "walk", "confidence": 0.3}
                for i in range(12)
            ],
        }
    )  # fmt: skip
    records = sample_records(upload.rows, spec.data_schema, spec.validation, LABELS)
    obj = inbox_object(prefix, records)
    store.put_bytes(obj.key, obj.data)
    result = collect(store, NS, NAME, spec, store.clock)
    assert result.outcome == Outcome.PUBLISHED, result
    assert (result.accepted, result.rejected) == (13, 0)
    assert result.latest is not None and result.latest["sampleCount"] == 13
    assert layout.inbox_prefix(NS, NAME) == prefix


def test_the_row_budget_is_per_device_and_refills_over_the_hour() -> None:
    budget = RowBudget()
    assert budget.take("ns/a", 100, 120, now=0.0) == 0
    wait = budget.take("ns/a", 30, 120, now=0.0)
    assert wait == pytest.approx(10 * 30)  # 10 rows missing at 120/h = 300 s
    assert budget.take("ns/b", 120, 120, now=0.0) == 0  # another device's budget
    assert budget.take("ns/a", 30, 120, now=300.0) == 0  # refilled meanwhile
    budget.give_back("ns/a", 30)  # the write failed
    assert budget.take("ns/a", 30, 120, now=300.0) == 0
    assert budget.take("ns/d", 100, 120, now=0.0) == 0  # 20 left
    assert budget.take("ns/d", 10, 10, now=0.0) == 0  # the cap lowered to 10: 10 left
    assert budget.take("ns/d", 1, 10, now=0.0) > 0
    with pytest.raises(ValueError):
        budget.take("ns/c", 11, 10, now=0.0)
