"""Ingestion bugs a new-user trial of issue 16 found (bugs 3, 5, 6, 7, C1, C2 of the trial):
each input of the trial's reproduction, through the real readers, sources and cleaning,
asserting the exact rows, counts, reasons and lines."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from edgeops.api import DatasetSchema, DatasetSpec, Feature, ValidationRules
from edgeops.datasets.cleaning import CleanResult, clean
from edgeops.datasets.readers import read_rows
from edgeops.datasets.rows import Rejected, Row
from edgeops.datasets.sources import list_batches
from tests.unit.test_datasets_ingest import MemoryStore

SCHEMA = DatasetSchema(
    features=[Feature(name="id", type="int"), Feature(name="note", type="string")],
    label="label",
)
ALL = ValidationRules(max_rejected_fraction=1)


def _clean(data: bytes, fmt: str = "csv", schema: DatasetSchema = SCHEMA) -> CleanResult:
    used = [f.name for f in schema.features] + [schema.label or "label"]
    rows = read_rows(data, fmt, "f", used=used)  # type: ignore[arg-type]
    return clean([("f", rows)], schema, ALL)


def _lines(result: CleanResult) -> list[tuple[int | None, str, int | None]]:
    return [(r.line, r.reason, r.rows) for r in result.rejected]


# --- bug 3: a declared encoding never applies to the gateway's inbox objects -------------


def _inbox_spec(encoding: str | None) -> dict[str, object]:
    source: dict[str, object] = {"inbox": {}}
    if encoding:
        source["encoding"] = encoding
    return {
        "format": "jsonl",
        "sources": [source],
        "schema": {"features": [{"name": "note", "type": "string"}], "label": "label"},
        "governance": {"classification": "internal"},
    }


def test_an_encoding_on_an_inbox_source_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"sources\[\]\.encoding: not for an inbox"):
        DatasetSpec.model_validate(_inbox_spec("windows-1252"))


def test_an_encoding_stored_before_the_rule_is_not_applied_to_inbox_objects() -> None:
    """A Dataset admitted before the rule may still hold one: UTF-8 is read as UTF-8."""
    spec = DatasetSpec.model_validate(_inbox_spec(None))
    spec.sources[0] = spec.sources[0].model_copy(update={"encoding": "windows-1252"})
    store = MemoryStore()
    upload = '{"note": "café", "label": "a"}\n'.encode()
    store.put_bytes("inbox/team/imu/dev1/upload.jsonl", upload)
    (batch,) = list_batches(spec, store, "team", "imu")  # type: ignore[arg-type]
    assert list(batch.rows()) == [{"note": "café", "label": "a"}]


# --- bug 5: an unterminated quote ---------------------------------------------------------

TRIAL_5 = (
    b'id,note,label\n1,"line one\nline two\nline three",0\n2,ok,1\n'
    b'3,"unterminated,1\n4,after,0\n5,x,notint\n'
)


def test_an_unterminated_quote_is_reported_where_it_starts_counting_every_line() -> None:
    """Lines 6-8 were swallowed into one record: rejected at line 6 as 3 rows, so the
    rejected fraction is 3 of 5, not 1 of 3."""
    result = _clean(TRIAL_5)
    assert sorted((r["id"], r["note"]) for r in result.accepted) == [
        (1, "line one\nline two\nline three"),
        (2, "ok"),
    ]
    ((line, reason, rows),) = _lines(result)
    assert (line, reason, rows) == (6, "Malformed", 3)
    assert "spans lines 6-8" in result.rejected[0].detail
    assert "counted as 3 rejected rows" in result.rejected[0].detail
    assert result.invalid_count == 3
    assert result.rejected_by_reason == {"Malformed": 3}
    assert result.invalid_fraction() == pytest.approx(3 / 5)


def test_a_legitimate_multiline_record_stays_one_row_and_its_next_line_is_right() -> None:
    data = b'id,note,label\n1,"a\nb",0\n2,"c",0,extra\n3,d,1\n'
    result = _clean(data)
    assert sorted(r["id"] for r in result.accepted) == [1, 3]
    assert _lines(result) == [(4, "Malformed", 1)]


def test_blank_lines_inside_a_swallowed_record_are_not_counted() -> None:
    data = b'id,note,label\n1,ok,0\n2,"open,0\n\n3,x,1\n'
    result = _clean(data)
    assert _lines(result) == [(3, "Malformed", 2)]


# --- bug 6: rejections from validation carry the file line --------------------------------


def test_csv_validation_rejects_carry_the_file_line() -> None:
    schema = DatasetSchema(features=[Feature(name="temp", type="float")], label="label")
    result = _clean(b"temp,label\nNA,a\n1.5,b\n\n2.5,c,x\nzz,d\n", schema=schema)
    assert _lines(result) == [(2, "TypeMismatch", 1), (5, "Malformed", 1), (6, "TypeMismatch", 1)]


def test_csv_validation_reject_after_a_multiline_record_names_its_start_line() -> None:
    result = _clean(b'id,note,label\n1,"a\nb\nc",0\nx,d,1\n')
    assert _lines(result) == [(5, "TypeMismatch", 1)]


def test_jsonl_validation_rejects_carry_the_file_line() -> None:
    data = b'{"id": 1, "note": "a", "label": 0}\n{"id": 2, "note": "b", "label": 0}\n\n'
    data += b'{"id": "x", "note": "c", "label": 1}\nnot json\n{"note": "d", "label": 1}\n'
    result = _clean(data, "jsonl")
    assert _lines(result) == [(4, "TypeMismatch", 1), (5, "Malformed", 1), (6, "MissingColumn", 1)]


def test_parquet_validation_rejects_carry_the_row_position() -> None:
    buffer = io.BytesIO()
    table = pa.table({"id": ["1", "2", "x"], "note": ["a", "b", "c"], "label": ["0", "1", "0"]})
    pq.write_table(table, buffer)
    result = _clean(buffer.getvalue(), "parquet")
    assert _lines(result) == [(3, "TypeMismatch", 1)]


# --- bug 7: int features take ASCII integers within int64 only ----------------------------

INT = DatasetSchema(features=[Feature(name="n", type="int")], label="label")


def _ints(values: list[object]) -> CleanResult:
    rows: list[Row | Rejected] = [{"n": v, "label": "a"} for v in values]
    return clean([("f", rows)], INT, ALL)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("42", 42),
        ("+7", 7),
        ("-0012", -12),
        (" 9007199254740993 ", 9007199254740993),
        ("4.0", 4),
        ("1e3", 1000),
        ("-2.50e1", -25),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        (9223372036854775807, 2**63 - 1),
        (1e18, 10**18),
    ],
)
def test_int_accepts_ascii_integers_and_whole_float_forms(value: object, expected: int) -> None:
    result = _ints([value])
    assert [r["n"] for r in result.accepted] == [expected]
    assert type(result.accepted[0]["n"]) is int


@pytest.mark.parametrize(
    "value",
    [
        "1_000",
        "\u0661\u0662\u0663",
        "\uff11\uff12",
        "1 000",
        "0x10",
        "4.5",
        "",
        "\u0661.\u0660",
        "1e3_0",
    ],
)
def test_int_refuses_python_only_spellings(value: str) -> None:
    result = _ints([value])
    if value == "":
        assert result.rejected_by_reason == {"MissingValue": 1}
        return
    assert result.rejected_by_reason == {"TypeMismatch": 1}
    assert result.rejected[0].detail == "column n is not a valid int"


@pytest.mark.parametrize(
    "value",
    ["18446744073709551616", "9223372036854775808", "-9223372036854775809", 2**64, 1e19, "1e19"],
)
def test_int_outside_int64_is_out_of_range_naming_the_bounds(value: object) -> None:
    result = _ints([value])
    assert result.rejected_by_reason == {"OutOfRange": 1}
    assert result.rejected[0].detail == (
        "column n is outside the int64 range [-9223372036854775808, 9223372036854775807]"
    )


@pytest.mark.parametrize("value", ["inf", "-Infinity", "nan", "1e999"])
def test_int_text_that_is_not_finite_stays_not_finite(value: str) -> None:
    assert _ints([value]).rejected_by_reason == {"NotFinite": 1}


# --- C1: unnamed and unused repeated CSV columns ------------------------------------------

TEMP = DatasetSchema(features=[Feature(name="temp", type="float")], label="label")


def test_excel_trailing_unnamed_empty_columns_are_ignored_silently() -> None:
    result = _clean(b"temp,label,,\n1.5,a,,\n2.5,b,,\n", schema=TEMP)
    assert sorted(r["temp"] for r in result.accepted) == [1.5, 2.5]
    assert result.rejected == []


def test_unnamed_columns_with_values_are_ignored_with_a_note() -> None:
    result = _clean(b",temp,label,\n0,1.5,a,\n1,2.5,b,x\n", schema=TEMP)
    assert sorted(r["temp"] for r in result.accepted) == [1.5, 2.5]
    (note,) = result.rejected
    assert (note.line, note.reason, note.rows) == (None, "IgnoredColumn", 0)
    assert note.detail == "csv file: columns with no name in the header (1, 4) hold values: ignored"
    assert result.invalid_count == 0 and result.rejected_by_reason == {}
    assert result.unread == [
        {"source": "f", "rows": 0, "reason": "IgnoredColumn", "detail": note.detail}
    ]


def test_a_repeated_column_the_schema_does_not_use_is_ignored_with_a_note() -> None:
    result = _clean(b"extra,temp,extra,label\nu,1.5,v,a\nw,2.5,x,b\n", schema=TEMP)
    assert sorted(r["temp"] for r in result.accepted) == [1.5, 2.5]
    (note,) = result.rejected
    assert (note.reason, note.rows) == ("IgnoredColumn", 0)
    assert note.detail == (
        "csv file: column 'extra' appears 2 times in the header and is not used by the "
        "schema: ignored"
    )
    assert result.invalid_fraction() == 0


def test_a_repeated_column_the_schema_uses_still_refuses_the_file() -> None:
    result = _clean(b"temp,extra,temp,label,,\n1,u,2,a,,\n3,v,4,b,,\n", schema=TEMP)
    assert result.accepted == []
    assert _lines(result) == [(None, "Malformed", 2)]
    assert result.rejected[0].detail == (
        "csv file: column 'temp' appears 2 times in the header (columns 1, 3); the file is refused"
    )


# --- C2: an object whose rows cannot be counted is not "1 rejected" -----------------------


def test_an_object_of_unknown_rows_counts_no_number_and_fails_the_gate() -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"temp": [1.5, 2.5], "label": ["a", "b"]}), buffer)
    data = buffer.getvalue()
    rows = [
        *read_rows(data, "parquet", "good"),
        *read_rows(data[: len(data) // 2], "parquet", "cut"),
    ]
    result = clean([("f", rows)], TEMP, ALL)
    assert len(result.accepted) == 2
    assert result.invalid_count == 0
    assert result.rejected_by_reason == {}
    (unread,) = result.unread
    assert (unread["source"], unread["rows"], unread["reason"]) == ("cut", None, "Unreadable")
    # Any limit below 1 refuses the collection; with maxRejectedFraction 1 it publishes,
    # and the version's rejectedCount is 0 while status names the object, "unknown rows".
    assert result.invalid_fraction() == 1.0
