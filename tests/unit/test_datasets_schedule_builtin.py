"""Collection schedules and the built-in datasets shipped in installed packages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgeops.api import BuiltinDatasetName, DatasetSpec, ValidationRules
from edgeops.datasets import builtin
from edgeops.datasets.cleaning import clean
from edgeops.datasets.schedule import is_due

T0 = datetime(2026, 3, 2, 10, 17, 30, tzinfo=UTC)  # a Monday


def test_interval_schedule() -> None:
    assert is_due("5m", None, T0)
    assert not is_due("5m", T0, T0 + timedelta(minutes=4))
    assert is_due("5m", T0, T0 + timedelta(minutes=5))
    assert not is_due(None, T0, T0 + timedelta(days=9))  # no schedule: collect once


def test_cron_schedule() -> None:
    assert is_due("0 3 * * *", T0, T0 + timedelta(hours=17))  # 03:00 next day has passed
    assert not is_due("0 3 * * *", T0, T0 + timedelta(hours=16))
    assert is_due("*/15 * * * *", T0, datetime(2026, 3, 2, 10, 30, tzinfo=UTC))
    assert not is_due("*/15 * * * *", T0, datetime(2026, 3, 2, 10, 29, tzinfo=UTC))
    assert is_due("@hourly", T0, datetime(2026, 3, 2, 11, 0, tzinfo=UTC))
    with pytest.raises(ValueError):
        is_due("61 * * * *", T0, T0 + timedelta(hours=1))


@pytest.mark.parametrize(
    ("name", "rows", "label", "classes"),
    [
        ("basic-motions", 80, "activity", {"Standing", "Running", "Walking", "Badminton"}),
        ("italy-power-demand", 1096, "season", {"winter", "summer"}),
        ("seattle-weather", 1461, "weather", {"drizzle", "rain", "sun", "snow", "fog"}),
        ("digits", 1797, "digit", {str(d) for d in range(10)}),
    ],
)
def test_builtin_datasets_load_real_data_and_validate_cleanly(
    name: BuiltinDatasetName, rows: int, label: str, classes: set[str]
) -> None:
    data = builtin.load(name)
    assert data.schema.label == label
    result = clean([(name, data.rows())], data.schema, ValidationRules(dedupe=False))
    assert not result.rejected
    assert len(result.accepted) == rows
    assert {r[label] for r in result.accepted} == classes
    assert data.fingerprint() == builtin.load(name).fingerprint()


def test_basic_motions_rows_are_per_channel_imu_summaries() -> None:
    first = next(builtin.load("basic-motions").rows())
    assert first["case"] == "train-000" and first["activity"] == "Standing"
    assert first["acc_x_min"] <= first["acc_x_mean"] <= first["acc_x_max"]
    assert len([k for k in first if k.startswith(("acc_", "gyr_"))]) == 24


def test_builtin_spec_needs_no_schema() -> None:
    spec = DatasetSpec.model_validate(
        {"sources": [{"builtin": {"name": "digits"}}], "governance": {"classification": "public"}}
    )
    assert spec.data_schema is None
