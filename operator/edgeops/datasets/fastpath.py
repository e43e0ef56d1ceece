"""Vectorised reading and cleaning of regular CSV and Parquet objects.

A batch (pyarrow record batch) is typed column by column with pyarrow and NumPy, and only
when every value passes every rule of :mod:`edgeops.datasets.cleaning` in a form whose
result is known equal to the row path's: strict decimal text for floats (Arrow's and
Python's parsers both round correctly), ASCII integer text for ints, no missing values,
no surrounding spaces, no number-like category text, values in range. Anything else
(a missing value, an odd header, a bad record, another encoding, a value out of range,
too many rows) raises :class:`NotFastError` and the whole object is read again by the
row readers, which know every rule's details (lines, reasons, notes). So the fast path
never decides anything the row path would decide differently; it only skips the Python
object per value where nothing needs deciding.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from edgeops.api import DatasetSchema, Feature, ValidationRules
from edgeops.canonical_json import sorted_json

from .cleaning import kept_columns
from .readers import ReadLimits, _plain_size, declared_uncompressed_bytes
from .rows import Row
from .stream import Columns


class NotFastError(Exception):
    """The object needs the row path (see module doc)."""


@dataclass
class FastBatch:
    """Typed rows (kept columns only), their profiled columns, and the coercions the row
    path would have counted for them. ``lines``: the rows' shard lines built by Arrow
    (bytes with a newline after each, and each one's length), when every value's text is
    known equal to :func:`edgeops.canonical_json.sorted_json`'s; ``rows`` is then empty
    unless needed (FillMean sums)."""

    rows: list[Row]
    columns: Columns
    coercions: Counter[str]
    lines: tuple[Any, Any] | None = None
    keys: list[bytes] | None = None


#: Python's str.strip() whitespace; a value starting or ending with one goes the row way.
_SPACE: Final = (
    "[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}"
    "\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}]"
)
_PADDED: Final = f"^{_SPACE}|{_SPACE}$"
#: Decimal text both parsers read alike (no spaces, underscores, inf/nan, hex).
_FLOAT: Final = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_INT: Final = r"^-?[0-9]+$"
#: A superset of what cleaning.category rewrites as a number ("1.0" -> "1").
_NUMBERLIKE: Final = r"^[0-9+\-.eE]*[.eE][0-9+\-.eE]*$"
#: Rows per CSV block read at a time (about).
_CSV_BLOCK: Final = 1 << 20
_PARQUET_BATCH: Final = 16384


def batches(
    data: bytes,
    fmt: str,
    encoding: str | None,
    schema: DatasetSchema,
    rules: ValidationRules,
    limits: ReadLimits,
) -> Iterator[FastBatch]:
    """The object's rows in typed batches, or NotFastError (possibly after some
    batches: the caller rolls those back)."""
    if len(data) > limits.max_object_bytes:
        raise NotFastError
    if fmt == "csv":
        source = _csv_batches(data, encoding, kept_columns(schema))
    elif fmt == "parquet":
        source = _parquet_batches(data, limits)
    else:
        raise NotFastError
    features = {f.name: f for f in schema.features}
    columns = kept_columns(schema)
    keys = list(schema.row_key or [])
    need_rows = rules.missing_values == "FillMean"
    profiled = [f.name for f in schema.features if f.type not in ("float", "int")]
    profiled += [schema.label] if schema.label else []
    profiled = list(dict.fromkeys([*profiled, *(schema.slice_columns or [])]))
    total = 0
    for batch in source:
        total += batch.num_rows
        if total > limits.max_rows:
            raise NotFastError
        yield _typed(batch, features, columns, rules, keys, need_rows, profiled)


def _csv_batches(data: bytes, encoding: str | None, used: list[str]) -> Iterator[Any]:
    import pyarrow.csv as pacsv  # type: ignore[import-untyped]

    if encoding not in (None, "utf-8", "utf8", "UTF-8"):
        raise NotFastError
    data = data.removeprefix(codecs.BOM_UTF8)
    end = data.find(b"\n")
    first = data if end < 0 else data[:end]
    if first.count(b'"') % 2 or not first.strip():
        raise NotFastError  # a header spanning lines, or none
    try:
        header = next(csv.reader([first.decode("utf-8").rstrip("\r")]))
    except (UnicodeError, csv.Error, StopIteration):
        raise NotFastError from None
    names = [h.strip() for h in header]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise NotFastError
    if any(c not in names for c in used):
        raise NotFastError  # MissingColumn rows: the row path names them
    try:
        reader = pacsv.open_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1, block_size=_CSV_BLOCK, use_threads=True
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                include_columns=used,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
        yield from reader
    except (pa.ArrowException, ValueError, OSError):
        raise NotFastError from None


def _parquet_batches(data: bytes, limits: ReadLimits) -> Iterator[Any]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    try:
        reader = pq.ParquetFile(io.BytesIO(data))
        meta = reader.metadata
        names = reader.schema_arrow.names
        if len(set(names)) != len(names) or meta.num_rows > limits.max_rows:
            raise NotFastError
        declared = declared_uncompressed_bytes(meta)
        if declared > limits.max_decompressed_bytes:
            raise NotFastError
        decoded = 0
        for batch in reader.iter_batches(batch_size=_PARQUET_BATCH):
            decoded += _plain_size(batch)
            if decoded > limits.max_decompressed_bytes:
                raise NotFastError
            yield batch
    except (pa.ArrowException, ValueError, OSError):
        raise NotFastError from None


def _any(mask: Any) -> bool:
    return bool(pc.any(mask).as_py())


def _all(mask: Any) -> bool:
    return bool(pc.all(mask).as_py())


def _text(column: Any, tokens: list[str] | None) -> Any:
    """A string column with no missing value and no surrounding space, or NotFast."""
    if (
        column.null_count
        or _any(pc.equal(column, ""))
        or _any(pc.match_substring_regex(column, _PADDED))
    ):
        raise NotFastError
    if tokens and _any(pc.is_in(column, value_set=pa.array(tokens, pa.string()))):
        raise NotFastError
    return column


def _typed(
    batch: Any,
    features: dict[str, Feature],
    kept: list[str],
    rules: ValidationRules,
    key_columns: list[str],
    need_rows: bool,
    profiled: list[str],
) -> FastBatch:
    names = batch.schema.names
    coercions: Counter[str] = Counter()
    typed: dict[str, Any] = {}
    columns = Columns()
    n = batch.num_rows
    for name in kept:
        if name not in names:
            raise NotFastError
        column = batch.column(names.index(name))
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        feature = features.get(name)
        if feature is None:
            typed[name] = _category(column)
        else:
            typed[name] = _feature(column, feature, rules, coercions, n)
    for name, feature in features.items():
        if feature.type in ("float", "int"):
            columns.numeric[name] = typed[name].to_numpy(zero_copy_only=False).astype(np.float64)
    for name in profiled:  # categorical features, label, slices (not row keys)
        encoded = pc.dictionary_encode(typed[name])
        labels = [str(v) for v in encoded.dictionary.to_pylist()]
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        columns.codes[name] = (codes, labels)
    built = _json_lines(typed, kept, features, columns)
    if built is not None and not need_rows:
        keys = _json_keys(typed, key_columns) if key_columns else None
        if not key_columns or keys is not None:
            return FastBatch([], columns, coercions, built, keys)
    rows: list[Row] = pa.table({name: typed[name] for name in kept}).to_pylist()
    return FastBatch(rows, columns, coercions)


def _feature(
    column: Any, feature: Feature, rules: ValidationRules, coercions: Counter[str], n: int
) -> Any:
    kind = feature.type
    if column.null_count:
        raise NotFastError
    string = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    if kind == "string":
        if not string:
            raise NotFastError
        return _text(column, feature.missing_tokens)
    if kind == "float":
        if string:
            column = _text(column, feature.missing_tokens)
            if not _all(pc.match_substring_regex(column, _FLOAT)):
                raise NotFastError
            converted = pc.cast(column, pa.float64())
            coercions[f"{feature.name}: str -> float"] += n
        elif pa.types.is_float64(column.type):
            converted = column
        else:
            raise NotFastError
        values = converted.to_numpy(zero_copy_only=False)
        if not np.isfinite(values).all():
            raise NotFastError
    elif kind == "int":
        if string:
            column = _text(column, feature.missing_tokens)
            if not _all(pc.match_substring_regex(column, _INT)):
                raise NotFastError
            try:
                converted = pc.cast(column, pa.int64())
            except pa.ArrowException:
                raise NotFastError from None
            coercions[f"{feature.name}: str -> int"] += n
        elif pa.types.is_int64(column.type):
            converted = column
        else:
            raise NotFastError
        values = converted.to_numpy(zero_copy_only=False)
    else:
        raise NotFastError  # bool: the row path
    if rules.range_checks and (
        (feature.min is not None and bool((values < feature.min).any()))
        or (feature.max is not None and bool((values > feature.max).any()))
    ):
        raise NotFastError
    return converted


def _category(column: Any) -> Any:
    """A label, slice or key column whose canonical text (cleaning.category) is the
    value itself, as strings."""
    if column.null_count:
        raise NotFastError
    if pa.types.is_integer(column.type) and not pa.types.is_boolean(column.type):
        return pc.cast(column, pa.string())
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise NotFastError
    column = _text(column, None)
    if _any(pc.match_substring_regex(column, _NUMBERLIKE)):
        raise NotFastError
    return column


#: Text that must be escaped in JSON (Python's json escapes these and nothing else
#: with ensure_ascii=False).
_ESCAPED: Final = r'["\\\x00-\x1f]'
#: Floats whose Arrow text (plus ".0" when integral) is Python's repr: checked on ~2 M
#: random doubles; outside (1e10 and up: "1e+10" vs "10000000000.0") the row way.
_ARROW_LOW: Final = 1e-4
_ARROW_HIGH: Final = 1e10


def _json_lines(
    typed: dict[str, Any], kept: list[str], features: dict[str, Feature], columns: Columns
) -> tuple[Any, Any] | None:
    """Each row's :func:`~edgeops.canonical_json.sorted_json` line (keys sorted, no
    spaces) plus a newline, built column-wise by Arrow: (bytes as uint8, lengths). None
    when a value's text could differ (a float outside the checked range, a string
    needing an escape): the rows are then written by the row encoder."""
    parts: list[Any] = []
    for i, name in enumerate(sorted(kept)):
        column = typed[name]
        feature = features.get(name)
        kind = feature.type if feature is not None else "category"
        if kind == "float":
            magnitude = np.abs(columns.numeric[name])
            if bool(
                (((magnitude < _ARROW_LOW) & (magnitude != 0)) | (magnitude >= _ARROW_HIGH)).any()
            ):
                return None
            text = pc.cast(column, pa.string())
            integral = pc.invert(pc.match_substring_regex(text, "[.en]"))
            text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
        elif kind == "int":
            text = pc.cast(column, pa.string())
        else:
            if _any(pc.match_substring_regex(column, _ESCAPED)):
                return None
            text = pc.binary_join_element_wise('"', column, '"', "")
        prefix = ("{" if i == 0 else ",") + sorted_json(name).decode() + ":"
        parts += [prefix, text]
    lines = pc.binary_join_element_wise(*parts, "}\n", "")
    lines = pc.cast(lines, pa.binary())
    n = len(lines)
    _, offsets_buffer, data_buffer = lines.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[lines.offset : lines.offset + n + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])]
    return data, np.diff(offsets).astype(np.int64)


def _json_keys(typed: dict[str, Any], key_columns: list[str]) -> list[bytes] | None:
    """Each row key's canonical JSON (a list of the key columns' category strings), or
    None when one needs an escape."""
    parts: list[Any] = []
    for i, name in enumerate(key_columns):
        column = typed[name]
        if _any(pc.match_substring_regex(column, _ESCAPED)):
            return None
        parts += ["[" if i == 0 else ",", pc.binary_join_element_wise('"', column, '"', "")]
    joined = pc.binary_join_element_wise(*parts, "]", "")
    return [x.encode() for x in joined.to_pylist()]
