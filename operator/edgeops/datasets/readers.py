"""Parsing CSV, JSON Lines, Parquet and NumPy archives into rows.

A reader yields a row dict per record, or a :class:`Rejected` for a record it cannot parse,
so one bad line never hides the good ones and every failure is counted.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from edgeops.api import DataFormat
from edgeops.settings import settings

from .rows import Rejected, RejectReason, Row

#: Bytes in a MiB, the unit of the size settings.
MIB: Final = 1024 * 1024

EXTENSIONS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "parquet": (".parquet", ".pq"),
    "npz": (".npz",),
}


def matches_format(key: str, fmt: DataFormat) -> bool:
    return key.lower().endswith(EXTENSIONS[fmt])


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on one source object, so no object can exhaust the operator's memory:
    its size (bytes), what it may expand to (bytes of decoded arrays: npz arrays as their
    headers declare them, Parquet columns as its footer declares them and as decoded), and
    its rows. Defaults: the settings (``EDGEOPS_SOURCE_MAX_*``)."""

    max_object_bytes: int
    max_decompressed_bytes: int
    max_rows: int

    @classmethod
    def from_settings(cls) -> ReadLimits:
        config = settings()
        return cls(
            config.source_max_object_mib * MIB,
            config.source_max_decompressed_mib * MIB,
            config.source_max_rows_per_object,
        )


class LimitExceededError(Exception):
    """An object goes over a :class:`ReadLimits` bound. ``rows`` is its row count where
    the object declares it (or where it was counted), else 1."""

    def __init__(self, message: str, rows: int = 1) -> None:
        super().__init__(message)
        self.rows = max(rows, 1)


def too_large(source: str, error: LimitExceededError) -> Rejected:
    """The rejection of a whole object for ``error``."""
    return Rejected(source, None, RejectReason.TOO_LARGE, str(error), rows=error.rows)


def read_rows(
    data: bytes,
    fmt: DataFormat,
    source: str,
    features: Sequence[str] = (),
    label: str | None = None,
    limits: ReadLimits | None = None,
) -> Iterator[Row | Rejected]:
    """Rows of one file. ``features`` and ``label`` name an npz archive's ``X`` columns and
    its ``y`` vector.

    An object over one of ``limits`` (default: the settings) yields a single
    :class:`Rejected` with reason ``TooLarge`` whose detail names the setting, and no
    rows: a version never holds part of a file. npz and Parquet objects are judged from
    their headers before anything is decompressed; CSV and JSON Lines records are held
    back (at most ``limits.max_rows`` of them) until the object is known to fit.
    """
    limits = limits or ReadLimits.from_settings()
    if len(data) > limits.max_object_bytes:
        yield too_large(
            source,
            LimitExceededError(
                f"{len(data)} bytes, more than {limits.max_object_bytes} "
                "(EDGEOPS_SOURCE_MAX_OBJECT_MIB)"
            ),
        )
        return
    held: list[Row | Rejected] = []
    try:
        if fmt == "csv":
            records = _csv(data, source)
        elif fmt == "jsonl":
            records = _jsonl(data, source)
        elif fmt == "parquet":
            records = _parquet(data, limits)
        else:
            records = _npz(data, features, label or "label", limits)
        for record in records:
            held.append(record)
            if len(held) > limits.max_rows:
                held.clear()
                counted = limits.max_rows + 1 + _count(records)
                raise LimitExceededError(_too_many_rows(counted, limits), counted)
    except LimitExceededError as error:
        yield too_large(source, error)
        return
    except (UnicodeDecodeError, ValueError, OSError, KeyError, csv.Error) as error:
        # The records before the failure are kept; the rest of the file is unreadable.
        yield from held
        yield Rejected(source, None, RejectReason.UNREADABLE, f"{fmt} file: {type(error).__name__}")
        return
    yield from held


def _count(records: Iterator[Row | Rejected]) -> int:
    """How many more records ``records`` yields (those before a parse error)."""
    counted = 0
    with contextlib.suppress(UnicodeDecodeError, ValueError, OSError, KeyError, csv.Error):
        for _ in records:
            counted += 1
    return counted


def _too_many_rows(rows: int, limits: ReadLimits) -> str:
    return f"{rows} rows, more than {limits.max_rows} (EDGEOPS_SOURCE_MAX_ROWS_PER_OBJECT)"


def _too_much_data(what: str, size: int, limits: ReadLimits) -> str:
    return (
        f"{what} {size} bytes, more than {limits.max_decompressed_bytes} "
        "(EDGEOPS_SOURCE_MAX_DECOMPRESSED_MIB)"
    )


def _csv(data: bytes, source: str) -> Iterator[Row | Rejected]:
    text = data.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return
    header = [h.strip() for h in header]
    for values in reader:
        if not values or (len(values) == 1 and not values[0].strip()):
            continue  # blank line
        line = reader.line_num
        if len(values) != len(header):
            yield Rejected(
                source,
                line,
                RejectReason.MALFORMED,
                f"expected {len(header)} fields, found {len(values)}",
                {"_raw": values},
            )
            continue
        yield dict(zip(header, values, strict=True))


def _jsonl(data: bytes, source: str) -> Iterator[Row | Rejected]:
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            yield Rejected(source, number, RejectReason.MALFORMED, "not valid JSON", {"_raw": line})
            continue
        if not isinstance(record, dict):
            yield Rejected(
                source, number, RejectReason.MALFORMED, "not a JSON object", {"_raw": record}
            )
            continue
        yield record


def _parquet(data: bytes, limits: ReadLimits) -> Iterator[Row]:
    """Rows of a Parquet file, judged from its footer first: the footer's length, its row
    count and its row groups' uncompressed sizes must fit ``limits`` before any column is
    read. Row groups are then decoded a batch at a time, string and binary columns as
    dictionaries; each batch's size as plain values (a dictionary repeats a long string
    cheaply) is added up against the limit before the batch becomes Python rows."""
    import pyarrow as pa  # type: ignore[import-untyped]  # lazily: only Parquet needs it
    import pyarrow.compute as pc  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    if len(data) < 12 or data[-4:] != b"PAR1":
        raise ValueError("not a Parquet file")
    footer = int.from_bytes(data[-8:-4], "little")
    if footer > limits.max_decompressed_bytes or footer > len(data) - 8:
        raise LimitExceededError(_too_much_data("a Parquet footer of", footer, limits))
    try:
        probe = pq.ParquetFile(io.BytesIO(data))
        meta = probe.metadata
        rows = int(meta.num_rows)
        if rows > limits.max_rows:
            raise LimitExceededError(_too_many_rows(rows, limits), rows)
        declared = 0
        for group in range(meta.num_row_groups):
            row_group = meta.row_group(group)
            declared += max(
                int(row_group.total_byte_size),
                sum(
                    int(row_group.column(c).total_uncompressed_size)
                    for c in range(row_group.num_columns)
                ),
            )
        if declared > limits.max_decompressed_bytes:
            raise LimitExceededError(
                _too_much_data("declares an uncompressed size of", declared, limits), rows
            )
        strings = [
            field.name
            for field in probe.schema_arrow
            if pa.types.is_string(field.type)
            or pa.types.is_large_string(field.type)
            or pa.types.is_binary(field.type)
            or pa.types.is_large_binary(field.type)
        ]
        reader = pq.ParquetFile(io.BytesIO(data), read_dictionary=strings)
        decoded = 0
        for batch in reader.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            decoded += _plain_size(batch, pa, pc)
            if decoded > limits.max_decompressed_bytes:
                raise LimitExceededError(_too_much_data("decodes to over", decoded, limits), rows)
            yield from _plain_rows(batch, pa)
    except pa.ArrowException as error:
        raise ValueError(str(error)) from None


#: Rows of a Parquet file decoded at a time.
_PARQUET_BATCH_ROWS: Final = 4096


def _plain_size(batch: Any, pa: Any, pc: Any) -> int:
    """Bytes ``batch`` takes with its dictionary columns expanded to plain values."""
    size = 0
    for column in batch.columns:
        if pa.types.is_dictionary(column.type):
            lengths = pc.binary_length(column.dictionary).take(column.indices)
            size += int(pc.sum(lengths).as_py() or 0) + column.indices.nbytes
        else:
            size += int(column.nbytes)
    return size


def _plain_rows(batch: Any, pa: Any) -> Iterator[Row]:
    columns = [
        c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch.columns
    ]
    plain = pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
    yield from plain.to_pylist()


#: Arrays an npz archive may hold (columns): more is not a table but a way to make the
#: reader do work per member.
MAX_NPZ_ARRAYS: Final = 1024


def _npz(data: bytes, columns: Sequence[str], label: str, limits: ReadLimits) -> Iterator[Row]:
    """Two layouts: one 1-D array per column, or ``X`` (rows x features, in ``columns``
    order) with an optional ``y`` label vector.

    Before any array is decompressed, each member's zip header (its uncompressed size,
    which also caps what decompression may produce) and its ``.npy`` header (shape and
    dtype: what loading allocates) must fit ``limits``, as must the row count."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        _check_npz(archive, limits)
        arrays = {name: archive[name] for name in archive.files}
    if "X" in arrays:
        matrix = arrays.pop("X")
        if matrix.ndim != 2 or matrix.shape[1] != len(columns):
            raise ValueError(f"X has shape {matrix.shape}, expected (n, {len(columns)})")
        named: dict[str, Any] = {c: matrix[:, i] for i, c in enumerate(columns)}
        if "y" in arrays:
            named[label] = arrays.pop("y")
        named.update(arrays)
        arrays = named
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) > 1:
        raise ValueError("npz columns have different lengths")
    names = list(arrays)
    for i in range(lengths.pop() if lengths else 0):
        yield {name: arrays[name][i].item() for name in names}


def _npy_header(stream: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from the ``.npy`` header at the start of ``stream`` (numpy's
    header readers are untyped; they read at most the header, 64 KiB)."""
    version = np.lib.format.read_magic(stream)  # type: ignore[no-untyped-call]
    if version == (1, 0):
        header = np.lib.format.read_array_header_1_0(stream)  # type: ignore[no-untyped-call]
    elif version in ((2, 0), (3, 0)):
        header = np.lib.format.read_array_header_2_0(stream)  # type: ignore[no-untyped-call]
    else:
        raise ValueError(f"npy format version {version}")
    shape, _, dtype = header
    return tuple(int(n) for n in shape), np.dtype(dtype)


def _check_npz(archive: Any, limits: ReadLimits) -> None:
    """Raises LimitExceededError (or ValueError for a malformed header) unless every
    array of ``archive`` (an open ``NpzFile``) fits ``limits``, from headers alone."""
    members = archive.zip.infolist()
    if len(members) > MAX_NPZ_ARRAYS:
        raise LimitExceededError(f"{len(members)} arrays, more than {MAX_NPZ_ARRAYS}")
    allocated, rows = 0, 0
    for member in members:
        with archive.zip.open(member) as stream:  # inflates the header's few bytes only
            shape, dtype = _npy_header(stream)
        if dtype.hasobject:
            raise ValueError("object arrays are not data")
        count = math.prod(shape)
        allocated += count * dtype.itemsize
        rows = max(rows, shape[0] if shape else 1)
    if rows > limits.max_rows:
        raise LimitExceededError(_too_many_rows(rows, limits), rows)
    # What inflating may produce (zipfile stops at the declared size) and what loading
    # allocates (the headers' shapes): both must fit.
    declared = sum(member.file_size for member in members)
    if declared > limits.max_decompressed_bytes:
        raise LimitExceededError(_too_much_data("arrays of", declared, limits), rows)
    if allocated > limits.max_decompressed_bytes:
        raise LimitExceededError(_too_much_data("arrays that declare", allocated, limits), rows)
