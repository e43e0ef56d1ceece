"""Issue 16, items 1-6: real-world inputs that used to lose rows or change values silently.

Each test is a small hand-written file of one kind of fault, through the real readers and
cleaning, asserting the exact rows, counts, reasons and positions.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgeops.api import DataFormat, DatasetSchema, DatasetSpec, Feature, ValidationRules
from edgeops.datasets.cleaning import CleanResult, category, clean, row_digest
from edgeops.datasets.ingest import build_shards
from edgeops.datasets.profile import build_profile
from edgeops.datasets.readers import read_rows
from edgeops.datasets.rows import Rejected, Row
from edgeops.training.data import to_arrays

SCHEMA = DatasetSchema(
    features=[Feature(name="x", type="float"), Feature(name="n", type="int")], label="label"
)


def _read(data: bytes, fmt: DataFormat = "csv", **kwargs: Any) -> list[Row | Rejected]:
    return list(read_rows(data, fmt, "src", ["x", "n"], "label", **kwargs))


def _rejects(items: list[Row | Rejected]) -> list[Rejected]:
    return [i for i in items if isinstance(i, Rejected)]


def _rows(items: list[Row | Rejected]) -> list[Row]:
    return [i for i in items if not isinstance(i, Rejected)]


def _clean(items: list[Row | Rejected], schema: DatasetSchema = SCHEMA) -> CleanResult:
    return clean([("src", items)], schema, ValidationRules(max_rejected_fraction=1))


# --- 1. a failure partway through a file -------------------------------------------------


def test_csv_cell_over_the_field_limit_rejects_its_row_only() -> None:
    lines = ["x,n,label"] + [f"{i}.5,{i},a" for i in range(1, 101)]
    lines[11] = "11.5," + "9" * 140_000 + ",a"  # the 11th data row, line 12 of the file
    items = _read(("\r\n".join(lines) + "\r\n").encode())
    (reject,) = _rejects(items)
    assert (reject.line, reject.reason, reject.rows) == (12, "Malformed", 1)
    assert reject.detail == "csv: field larger than field limit (131072)"
    assert [r["n"] for r in _rows(items)] == [str(i) for i in range(1, 101) if i != 11]
    result = _clean(items)
    assert (len(result.accepted), result.invalid_count) == (99, 1)
    assert result.invalid_fraction() == pytest.approx(0.01)


def test_csv_in_another_encoding_rejects_the_rows_that_do_not_decode() -> None:
    text = "x,n,label\n1.5,1,café\n2.5,2,tea\n3.5,3,crème\n4.5,4,tea\n"
    data = text.encode("windows-1252")
    items = _read(data)
    assert [(r.line, r.reason) for r in _rejects(items)] == [(2, "Unreadable"), (4, "Unreadable")]
    assert "not valid utf-8" in _rejects(items)[0].detail
    assert "sources[].encoding" in _rejects(items)[0].detail
    assert [r["label"] for r in _rows(items)] == ["tea", "tea"]
    declared = _read(data, encoding="windows-1252")
    assert [r["label"] for r in _rows(declared)] == ["café", "tea", "crème", "tea"]
    assert not _rejects(declared)


def test_utf16_file_is_read_when_declared_and_counted_when_not() -> None:
    data = "x,n,label\n1.5,1,a\n2.5,2,b\n".encode("utf-16")  # with BOM, as Windows writes
    (reject,) = _read(data)
    assert isinstance(reject, Rejected)
    assert (reject.reason, reject.rows) == ("Unreadable", 2)
    assert "UTF-16 byte-order mark" in reject.detail
    assert _read(data, encoding="utf-16") == [
        {"x": "1.5", "n": "1", "label": "a"},
        {"x": "2.5", "n": "2", "label": "b"},
    ]


def _parquet(groups: list[list[Row]]) -> bytes:
    buffer = io.BytesIO()
    schema = pa.Table.from_pylist(groups[0]).schema
    with pq.ParquetWriter(buffer, schema, compression="none") as writer:
        for rows in groups:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    return buffer.getvalue()


def test_truncated_parquet_cannot_be_counted_and_fails_the_gate() -> None:
    data = _parquet([[{"x": float(i), "n": i, "label": "a"} for i in range(50)]])
    items = _read(data[: len(data) // 2], "parquet")
    (reject,) = items
    assert isinstance(reject, Rejected)
    assert (reject.reason, reject.rows) == ("Unreadable", None)
    result = _clean(items)
    assert result.invalid_fraction() == 1.0  # unknown: no limit below 1 can be met
    assert result.unread == [
        {"source": "src", "rows": None, "reason": "Unreadable", "detail": reject.detail}
    ]


def test_parquet_row_group_that_does_not_decode_is_counted_and_the_rest_read() -> None:
    groups = [
        [{"x": g * 10.0 + i, "n": g * 10 + i, "label": "a"} for i in range(10)] for g in (0, 1, 2)
    ]
    data = bytearray(_parquet(groups))
    meta = pq.ParquetFile(io.BytesIO(bytes(data))).metadata
    column = meta.row_group(1).column(0)  # x of the second group: overwrite its pages
    start = column.data_page_offset
    data[start : start + column.total_compressed_size] = b"\xff" * column.total_compressed_size
    items = _read(bytes(data), "parquet")
    (reject,) = _rejects(items)
    assert (reject.line, reject.reason, reject.rows) == (11, "Unreadable", 10)
    assert reject.detail.startswith("parquet row group 1 (rows 11-20): ")
    assert [r["n"] for r in _rows(items)] == [*range(10), *range(20, 30)]
    result = _clean(items)
    assert (len(result.accepted), result.invalid_count) == (20, 10)
    assert result.unread[0]["rows"] == 10


def test_npz_arrays_of_different_lengths_count_every_row() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.arange(40.0), n=np.arange(40), label=np.array(["a"] * 39))
    (reject,) = _read(buffer.getvalue(), "npz")
    assert isinstance(reject, Rejected)
    assert (reject.reason, reject.rows) == ("Malformed", 40)
    assert "x: 40, n: 40, label: 39" in reject.detail
    assert _clean([reject]).invalid_count == 40


def test_npz_member_that_does_not_inflate_counts_the_rows_its_headers_declare() -> None:
    rows = 3000
    values = np.random.default_rng(7).normal(size=rows)  # 24 kB that deflate cannot shrink
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=values, n=np.arange(rows), label=np.array(["a"] * rows))
    data = bytearray(buffer.getvalue())
    member = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("x.npy")
    start = member.header_offset + 30 + len("x.npy") + len(member.extra) + 12_000
    data[start : start + 64] = bytes(64)  # past the .npy header: the headers still read
    (reject,) = _read(bytes(data), "npz")
    assert isinstance(reject, Rejected)
    assert (reject.reason, reject.rows) == ("Unreadable", rows)
    assert "an array does not load" in reject.detail


def test_npz_column_in_x_and_as_an_array_is_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, X=np.zeros((3, 2)), y=np.array([0, 1, 0]), n=np.array([7, 8, 9]))
    (reject,) = _read(buffer.getvalue(), "npz")
    assert isinstance(reject, Rejected)
    assert (reject.reason, reject.rows) == ("Malformed", 3)
    assert "'n'" in reject.detail


# --- 2. JSON Lines framing ---------------------------------------------------------------


def test_jsonl_splits_on_newline_only_and_keeps_line_numbers() -> None:
    records = [
        {"x": 1.5, "n": 1, "label": "a\u2028b"},
        {"x": 2.5, "n": 2, "label": "c\x85d\x0ce\x1cf"},
    ]
    data = (
        b"\xef\xbb\xbf"  # UTF-8 BOM
        + json.dumps(records[0], ensure_ascii=False).encode()
        + b"\r\n\r\n"
        + json.dumps(records[1], ensure_ascii=False).encode()
        + b"\r\nnot json\r\n"
    )
    items = _read(data, "jsonl")
    assert _rows(items) == records
    (reject,) = _rejects(items)
    assert (reject.line, reject.reason) == (4, "Malformed")  # line 2 is blank


def test_jsonl_repeated_key_is_rejected_not_resolved() -> None:
    items = _read(
        b'{"x": 1.0, "n": 1, "label": "a"}\n{"x": 1.0, "x": 2.0, "n": 1, "label": "a"}\n', "jsonl"
    )
    (reject,) = _rejects(items)
    assert (reject.line, reject.reason, reject.detail) == (
        2,
        "Malformed",
        "key 'x' appears 2 times",
    )


def test_jsonl_lone_surrogate_escape_is_one_malformed_row_not_a_failed_collection() -> None:
    data = b'{"x": 1.0, "n": 1, "label": "\\ud800"}\n{"x": 2.0, "n": 2, "label": "a"}\n'
    items = _read(data, "jsonl")
    assert [(r.line, r.reason) for r in _rejects(items)] == [(1, "Malformed")]
    result = _clean(items)
    assert [r["n"] for r in result.accepted] == [2]
    # Kept aside as written (the escape, not the surrogate): storable as UTF-8.
    assert result.rejected[0].row == {"_raw": data.decode().splitlines()[0]}


def test_jsonl_in_another_encoding_rejects_only_the_undecodable_lines() -> None:
    data = '{"x": 1.0, "n": 1, "label": "é"}\n{"x": 2.0, "n": 2, "label": "e"}\n'.encode("latin-1")
    items = _read(data, "jsonl")
    assert [(r.line, r.reason) for r in _rejects(items)] == [(1, "Unreadable")]
    assert len(_rows(_read(data, "jsonl", encoding="iso-8859-1"))) == 2


# --- 3. integers stay exact --------------------------------------------------------------


def test_int_features_beyond_two_to_the_53_stay_exact_through_every_path() -> None:
    big = 2**53 + 1  # float(big) == 2**53
    schema = DatasetSchema(features=[Feature(name="n", type="int")], label="label")
    csv = f"n,label\n{big},a\n{big - 1},a\n{2**63 - 1},b\n-{big},b\n".encode()
    buffer = io.BytesIO()
    pq.write_table(
        pa.table({"n": pa.array([big, big - 1], pa.int64()), "label": ["a", "a"]}), buffer
    )
    sources: list[tuple[str, bytes, DataFormat]] = [
        ("csv", csv, "csv"),
        (
            "jsonl",
            f'{{"n": {big}, "label": "a"}}\n{{"n": "{big - 1}", "label": "a"}}\n'.encode(),
            "jsonl",
        ),
        ("parquet", buffer.getvalue(), "parquet"),
    ]
    for name, data, fmt in sources:
        result = clean(
            [(name, read_rows(data, fmt, name, ["n"], "label"))], schema, ValidationRules()
        )
        values = sorted(r["n"] for r in result.accepted)
        assert big in values and big - 1 in values, name
        assert result.duplicates == 0, name
    result = clean(
        [("csv", read_rows(csv, "csv", "csv", ["n"], "label"))], schema, ValidationRules()
    )
    assert sorted(r["n"] for r in result.accepted) == [-big, big - 1, big, 2**63 - 1]
    assert len({row_digest(r) for r in result.accepted}) == 4
    spec = DatasetSpec.model_validate(
        {
            "sources": [{"s3": {"prefix": "p/"}}],
            "schema": schema.model_dump(by_alias=True, exclude_none=True),
            "governance": {"classification": "internal"},
        }
    )
    shards, _ = build_shards(result.accepted, schema, spec)
    stored = sorted(
        json.loads(line)["n"]
        for key, data in shards.items()
        if key.startswith("data/")
        for line in data.splitlines()
    )
    assert stored == [-big, big - 1, big, 2**63 - 1]
    profile = build_profile(result.accepted, schema, {"train": 4})
    assert profile["rows"] == 4


def test_int_text_with_a_point_or_exponent_is_exact_and_must_be_integral() -> None:
    schema = DatasetSchema(features=[Feature(name="n", type="int")], label="label")
    rows: list[Row] = [
        {"n": "9007199254740993.0", "label": "a"},
        {"n": "1e3", "label": "a"},
        {"n": "4.5", "label": "a"},
        {"n": "1e999", "label": "a"},
        {"n": "12abc", "label": "a"},
    ]
    result = clean([("f", rows)], schema, ValidationRules(max_rejected_fraction=1))
    assert sorted(r["n"] for r in result.accepted) == [1000, 9007199254740993]
    assert result.rejected_by_reason == {"NotFinite": 1, "TypeMismatch": 2}


# --- 4. labels and slices by value --------------------------------------------------------


def test_labels_and_slices_from_files_of_different_sites_give_one_class_per_value() -> None:
    schema = DatasetSchema(
        features=[Feature(name="x", type="float")], label="label", slice_columns=["site"]
    )
    site_a = b"x,label,site\n1,0.0,1.0\n2,1.0,1.0\n3,1.00,1.0\n"
    site_b = (
        b'{"x": 4, "label": 0, "site": 1}\n'
        b'{"x": 5, "label": 1, "site": 1.0}\n'
        b'{"x": 6, "label": "1", "site": "1"}\n'
    )
    result = clean(
        [
            ("a.csv", read_rows(site_a, "csv", "a.csv", ["x"], "label")),
            ("b.jsonl", read_rows(site_b, "jsonl", "b.jsonl", ["x"], "label")),
        ],
        schema,
        ValidationRules(),
    )
    assert sorted({r["label"] for r in result.accepted}) == ["0", "1"]
    assert {r["site"] for r in result.accepted} == {"1"}
    profile = build_profile(result.accepted, schema, {})
    assert profile["label"]["distribution"] == {"0": 2, "1": 4}
    assert profile["slices"] == {"site": {"1": 6}}


def test_category_is_by_value_and_keeps_identifiers() -> None:
    assert [category(v) for v in (0, 0.0, "0.0", "-0.0", "0.000", "0e0")] == ["0"] * 6
    assert [category(v) for v in (2.5, "2.50", " 2.5 ", "25e-1")] == ["2.5"] * 4
    assert [category(v) for v in ("007", "NA", " a ", True, "1e999")] == [
        "007",
        "NA",
        "a",
        "true",
        "1e999",
    ]
    assert category(2**64 + 1) == category(f"{2**64 + 1}.0") == str(2**64 + 1)


def test_trainer_counts_classes_by_value_in_versions_published_before() -> None:
    schema = {"features": [{"name": "x", "type": "float"}], "label": "label"}
    rows = [
        {"x": 1.0, "label": "0"},
        {"x": 2.0, "label": "0.0"},
        {"x": 3.0, "label": "1"},
        {"x": 4.0, "label": "1.0"},
    ]
    data = to_arrays(schema, {"train": rows, "validation": [], "test": rows}, [])
    assert data.classes == ["0", "1"]
    assert data.y_train.tolist() == [0, 0, 1, 1]


# --- 5. missing values are declared -------------------------------------------------------


def test_only_empty_cells_are_missing_unless_the_schema_declares_tokens() -> None:
    schema = DatasetSchema(
        features=[
            Feature(name="country", type="string"),
            Feature(name="temp", type="float", nullable=True, missing_tokens=["NA", "-999"]),
        ],
        label="label",
    )
    data = b"country,temp,label\nNA,NA,a\nna,-999,a\nDE,,a\nnull,1.5,a\nFR,nan,a\nIT, NA ,a\n"
    result = clean(
        [("f", read_rows(data, "csv", "f", ["country", "temp"], "label"))],
        schema,
        ValidationRules(max_rejected_fraction=1),
    )
    assert sorted((r["country"], r["temp"]) for r in result.accepted) == [
        ("DE", None),
        ("IT", None),
        ("NA", None),
        ("na", None),
        ("null", 1.5),
    ]
    (reject,) = result.rejected  # "nan" is not declared: a NaN number, never a value
    assert (reject.line, reject.reason) == (6, "NotFinite")  # file line 6 (bug 6: not record 5)


def test_undeclared_na_in_a_numeric_column_is_a_type_mismatch_not_a_gap() -> None:
    schema = DatasetSchema(features=[Feature(name="temp", type="float")], label="label")
    result = clean(
        [("f", [{"temp": "NA", "label": "a"}])], schema, ValidationRules(missing_values="FillZero")
    )
    assert result.rejected_by_reason == {"TypeMismatch": 1}
    assert not result.imputed


# --- 6. headers are checked ---------------------------------------------------------------


@pytest.mark.parametrize("header", [b"x,n,x,label", b"x,n, x ,label", b"\xef\xbb\xbfx,n,x\t,label"])
def test_csv_with_a_repeated_column_is_refused_naming_it(header: bytes) -> None:
    data = header + b"\n1,2,3,a\n4,5,6,b\n\n7,8,9,c\n"
    (reject,) = _read(data)
    assert isinstance(reject, Rejected)
    assert (reject.reason, reject.rows, reject.line) == ("Malformed", 3, None)
    assert reject.detail == (
        "csv file: column 'x' appears 2 times in the header (columns 1, 3); the file is refused"
    )
    result = _clean([reject])
    assert result.unread == [
        {"source": "src", "rows": 3, "reason": "Malformed", "detail": reject.detail}
    ]


def test_parquet_with_a_repeated_column_is_refused_naming_it() -> None:
    table = pa.table(
        [pa.array([1.0, 2.0]), pa.array([1, 2]), pa.array([3.0, 4.0])], names=["x", "n", "x"]
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    (reject,) = _read(buffer.getvalue(), "parquet")
    assert isinstance(reject, Rejected)
    assert (reject.reason, reject.rows) == ("Malformed", 2)
    assert "column 'x' appears more than once" in reject.detail
