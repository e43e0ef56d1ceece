"""Readers and row validation: every rejected row is counted with a reason."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgeops.api import DataFormat, DatasetSchema, Feature, ValidationRules
from edgeops.datasets.cleaning import CleanResult, clean
from edgeops.datasets.readers import read_rows
from edgeops.datasets.rows import Rejected

SCHEMA = DatasetSchema(
    features=[
        Feature(name="temp", type="float", min=-40, max=60),
        Feature(name="count", type="int"),
        Feature(name="ok", type="bool", nullable=True),
    ],
    label="label",
    slice_columns=["site"],
)
CSV = (
    b"temp,count,ok,label,site\n"
    b"21.5,3,true,a,s1\n"
    b"99,1,false,a,s1\n"  # out of range
    b",2,true,b,s2\n"  # missing temp
    b"warm,2,true,b,s2\n"  # not a float
    b"21.5,3,true,a,s1\n"  # duplicate of row 1
    b"1,2,3\n"  # wrong number of fields
    b"18.0,4.0,,b,s2\n"  # int from float text, nullable bool missing
)


def _clean(
    data: bytes, fmt: DataFormat = "csv", rules: ValidationRules | None = None
) -> CleanResult:
    rows = read_rows(data, fmt, "f", ["temp", "count", "ok"], "label")
    return clean([("f", rows)], SCHEMA, rules or ValidationRules())


def test_csv_rows_are_typed_and_rejects_counted_by_reason() -> None:
    result = _clean(CSV)
    assert sorted(result.accepted, key=lambda r: r["temp"]) == [
        {"temp": 18.0, "count": 4, "ok": None, "label": "b", "site": "s2"},
        {"temp": 21.5, "count": 3, "ok": True, "label": "a", "site": "s1"},
    ]
    assert result.rejected_by_reason == {
        "Duplicate": 1,
        "Malformed": 1,
        "MissingValue": 1,
        "OutOfRange": 1,
        "TypeMismatch": 1,
    }
    assert result.invalid_count == 4
    assert result.coercions["temp: str -> float"] == 4  # duplicates and rejects too


def test_reject_details_never_contain_values() -> None:
    result = _clean(b"temp,count,ok,label,site\nsecret-name,1,true,a,s1\n")
    (rejected,) = result.rejected
    assert rejected.reason == "TypeMismatch"
    assert "secret-name" not in rejected.detail
    assert rejected.row["temp"] == "secret-name"  # kept aside for inspection in S3


def test_fill_rules_impute_instead_of_rejecting() -> None:
    data = b"temp,count,ok,label,site\n10,1,,a,s\n,1,,a,s\n30,1,,b,s\n"
    result = _clean(data, rules=ValidationRules(missing_values="FillMean"))
    assert sorted(r["temp"] for r in result.accepted) == [10.0, 20.0, 30.0]
    assert result.imputed == {"temp": 1}
    zero = _clean(data, rules=ValidationRules(missing_values="FillZero"))
    assert sorted(r["temp"] for r in zero.accepted) == [0.0, 10.0, 30.0]


def test_range_checks_and_dedupe_can_be_turned_off() -> None:
    data = b"temp,count,ok,label,site\n99,1,,a,s\n99,1,,a,s\n"
    result = _clean(data, rules=ValidationRules(range_checks=False, dedupe=False))
    assert len(result.accepted) == 2 and not result.rejected


def test_missing_column_is_its_own_reason() -> None:
    result = _clean(b"temp,ok,label,site\n1,true,a,s\n")
    assert result.rejected_by_reason == {"MissingColumn": 1}


def test_same_rows_in_any_format_and_order_give_the_same_result() -> None:
    rows = [
        {"temp": 21.5, "count": 3, "ok": True, "label": "a", "site": "s1"},
        {"temp": 18.0, "count": 4, "ok": None, "label": "b", "site": "s2"},
    ]
    jsonl = b"".join(json.dumps(r).encode() + b"\n" for r in reversed(rows))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    npz = io.BytesIO()
    np.savez(
        npz,
        temp=np.array([21.5, 18.0]),
        count=np.array([3, 4]),
        ok=np.array([True, False]),
        label=np.array(["a", "b"]),
        site=np.array(["s1", "s2"]),
    )
    from_jsonl = _clean(jsonl, "jsonl").accepted
    from_parquet = _clean(buffer.getvalue(), "parquet").accepted
    assert from_jsonl == from_parquet
    assert len(_clean(npz.getvalue(), "npz").accepted) == 2


def test_npz_matrix_layout_uses_schema_feature_order() -> None:
    npz = io.BytesIO()
    np.savez(
        npz, X=np.array([[1.0, 2, 1], [3.0, 4, 0]]), y=np.array([0, 1]), site=np.array(["x", "y"])
    )
    rows = list(read_rows(npz.getvalue(), "npz", "f", ["temp", "count", "ok"], "label"))
    assert rows[1] == {"temp": 3.0, "count": 4.0, "ok": 0.0, "label": 1, "site": "y"}


@pytest.mark.parametrize(
    ("data", "fmt", "reason"),
    [
        (b"\xff\xfe\x00garbage", "csv", "Unreadable"),
        (b"not parquet", "parquet", "Unreadable"),
        (b'{"temp": 1}\nnot json\n[1]\n', "jsonl", "Malformed"),
    ],
)
def test_unparseable_input_becomes_rejects(data: bytes, fmt: DataFormat, reason: str) -> None:
    items = list(read_rows(data, fmt, "bad-file", ["temp"]))
    rejects = [i for i in items if isinstance(i, Rejected)]
    assert rejects and all(r.reason == reason for r in rejects)
    assert all(r.source == "bad-file" for r in rejects)


def test_non_finite_values_are_rejected_in_every_column_type() -> None:
    schema = DatasetSchema(
        features=[
            Feature(name="temp", type="float"),
            Feature(name="count", type="int"),
            Feature(name="kind", type="string"),
        ],
        label="label",
    )
    rows: list[dict[str, object]] = [
        {"temp": float("inf"), "count": 1, "kind": "x", "label": "a"},
        {"temp": "-Infinity", "count": 1, "kind": "x", "label": "a"},
        {"temp": 1.0, "count": float("inf"), "kind": "x", "label": "a"},
        {"temp": 1.0, "count": "1e999", "kind": "x", "label": "a"},
        {"temp": 1.0, "count": 1, "kind": float("-inf"), "label": "a"},
        {"temp": 1.0, "count": 1, "kind": "x", "label": float("inf")},
        {"temp": 1.0, "count": 1, "kind": "Infinity", "label": "a"},  # a string is a string
    ]
    result = clean([("f", rows)], schema, ValidationRules())
    assert result.rejected_by_reason == {"NotFinite": 6}
    assert result.accepted == [{"temp": 1.0, "count": 1, "kind": "Infinity", "label": "a"}]


def test_nan_is_a_missing_value_never_a_silent_number() -> None:
    schema = DatasetSchema(features=[Feature(name="temp", type="float")], label="label")
    rows = [{"temp": float("nan"), "label": "a"}, {"temp": 2.0, "label": "a"}]
    rejected = clean([("f", rows)], schema, ValidationRules())
    assert rejected.rejected_by_reason == {"MissingValue": 1}
    filled = clean([("f", rows)], schema, ValidationRules(missing_values="FillZero"))
    assert sorted(r["temp"] for r in filled.accepted) == [0.0, 2.0]
    assert filled.imputed == {"temp": 1}
