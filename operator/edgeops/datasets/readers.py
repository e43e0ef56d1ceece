"""Parsing CSV, JSON Lines, Parquet and NumPy archives into rows.

A reader yields a row dict per record, or a :class:`Rejected` for a record it cannot parse,
so one bad line never hides the good ones and every failure is counted. A failure partway
through an object never drops the rest silently: the reader goes on after a bad CSV
record, JSON line or Parquet row group, and what cannot be read at all is rejected with the
number of rows it holds (``Rejected.rows``; ``None`` when not even that can be known, which
fails the collection's rejected-fraction gate, see :mod:`edgeops.datasets.cleaning`).

Text (CSV, JSON Lines) is decoded with the source's declared encoding, UTF-8 by default;
a byte-order mark is dropped. Bytes that do not decode spoil only the records they are in:
they are decoded to a marker no valid text holds, and a record that contains it is
rejected (``Unreadable``) with its line, so a file in another encoding keeps its ASCII
rows and says how many it could not read.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import math
import zipfile
import zlib
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from edgeops.api import DataFormat
from edgeops.settings import settings

from .rows import Rejected, RejectReason, Row, SourceRow

#: The rules by which files become typed rows (readers and cleaning). A collection's
#: fingerprint includes it, so a change to them (2: issue 16's exact ints, declared missing
#: tokens, labels by value, rows after a bad record; 3: ASCII int64 ints, record start
#: lines, unnamed and unused repeated CSV columns ignored) re-reads unchanged sources once;
#: the same content still gets the same version id.
READ_RULES: Final = 3

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


#: What an undecodable byte sequence becomes: a lone surrogate, which no strict decoder
#: produces from valid input, so its presence in a record means "bytes lost here".
_UNDECODABLE: Final = "\udcff"
_ERRORS: Final = "edgeops-undecodable"


def _mark(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return _UNDECODABLE, error.end


codecs.register_error(_ERRORS, _mark)


class UnreadableError(Exception):
    """A whole object (or what is left of it) cannot be read. ``rows``: how many rows
    that loses, ``None`` when the object does not say (e.g. a Parquet file cut before
    its footer). ``reason``: Unreadable, or Malformed for an object that reads but whose
    structure is wrong (a repeated column, arrays that do not line up)."""

    def __init__(
        self, message: str, rows: int | None, reason: str = RejectReason.UNREADABLE
    ) -> None:
        super().__init__(message)
        self.rows = rows
        self.reason = reason


def decode_text(data: bytes, encoding: str | None) -> str:
    """``data`` decoded with ``encoding`` (a Python codec name; ``None``: UTF-8), without a
    leading byte-order mark. Undecodable bytes become ``_UNDECODABLE`` (see
    :func:`undecodable`); never raises for bad bytes."""
    return data.decode(encoding or "utf-8", errors=_ERRORS).removeprefix("\ufeff")


def undecodable(text: str) -> bool:
    """Whether ``text`` (from :func:`decode_text`) held bytes that did not decode."""
    return _UNDECODABLE in text


def _encoding_hint(data: bytes, encoding: str | None) -> str:
    """Why text did not decode and what to do, for a reject's detail."""
    name = encoding or "utf-8"
    hint = f"bytes that are not valid {name}"
    if encoding is None and data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        hint += " (the object starts with a UTF-16 byte-order mark)"
    return hint + "; declare the source's encoding (sources[].encoding)"


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
    encoding: str | None = None,
    used: Collection[str] | None = None,
) -> Iterator[Row | Rejected]:
    """Rows of one file, each a :class:`SourceRow` with its line (or row position).
    ``features`` and ``label`` name an npz archive's ``X`` columns and its ``y`` vector;
    ``encoding`` (a Python codec name, default UTF-8) decodes CSV and JSON Lines; ``used``
    names the columns the schema uses (``None``: all), which decides whether a repeated
    CSV column refuses the file.

    A record that cannot be parsed is a :class:`Rejected` with its reason and line (or
    row position), and reading goes on. What cannot be read at all (a CSV header with a
    repeated column, a Parquet row group that does not decode, npz arrays of different
    lengths) is one :class:`Rejected` whose ``rows`` counts the rows it loses (``None``:
    unknown).

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
            records = _csv(data, source, encoding, used)
        elif fmt == "jsonl":
            records = _jsonl(data, source, encoding)
        elif fmt == "parquet":
            records = _parquet(data, source, limits)
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
    except UnreadableError as error:
        yield from held
        yield Rejected(source, None, error.reason, f"{fmt} file: {error}", rows=error.rows)
        return
    except _READ_ERRORS as error:
        # The records before the failure are kept; how many follow it is unknown.
        yield from held
        yield Rejected(
            source,
            None,
            RejectReason.UNREADABLE,
            f"{fmt} file: {type(error).__name__} after {len(held)} records; "
            "the rest could not be read or counted",
            rows=None,
        )
        return
    yield from held


#: What a reader's libraries raise for input they cannot parse.
_READ_ERRORS: Final = (
    UnicodeError,
    ValueError,
    OSError,
    KeyError,
    EOFError,
    csv.Error,
    zipfile.BadZipFile,
    zlib.error,  # a deflated npz member that does not inflate
)


def _count(records: Iterator[Row | Rejected]) -> int:
    """How many more records ``records`` yields (those before a parse error)."""
    counted = 0
    with contextlib.suppress(*_READ_ERRORS):
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


def _csv(
    data: bytes, source: str, encoding: str | None, used: Collection[str] | None
) -> Iterator[Row | Rejected]:
    """Rows of a CSV file (header first), each a :class:`SourceRow` with the line its
    record starts at. A record the csv module refuses (e.g. a field over its field size
    limit, 131072 characters), with the wrong number of fields or with undecodable bytes
    is rejected with the line it starts at, and reading goes on after it. Such a record
    that spans several lines (an unterminated or stray quote swallows the lines after it)
    counts each non-blank line it spans as a rejected row, since each was most likely a
    record of its own; its lines are not re-read, as a quoted field's continuation lines
    could pass for rows.

    Columns: one with an empty name (Excel's trailing columns, pandas' index) is ignored,
    with a note (reason IgnoredColumn, no row lost) if any of its cells holds a value. A
    name repeated in the header (also after stripping spaces) refuses the whole file,
    counting its records, when the column is in ``used`` (``None``: every column is);
    otherwise its columns are ignored, with a note. A header that does not decode refuses
    the file."""
    lines: list[str] = []
    reader = csv.reader(_remembered(io.StringIO(decode_text(data, encoding), newline=""), lines))
    raw_header = next(reader, None)
    if raw_header is None:
        return
    header = [h.strip() for h in raw_header]
    if any(undecodable(h) for h in header):
        raise UnreadableError(
            f"the header holds {_encoding_hint(data, encoding)}", _count_csv(reader)
        )
    counts = Counter(h for h in header if h)
    repeated = [name for name, n in counts.items() if n > 1]
    refused = [name for name in repeated if used is None or name in used]
    if refused:
        positions = [i + 1 for i, h in enumerate(header) if h == refused[0]]
        raise UnreadableError(
            f"column {refused[0]!r} appears {len(positions)} times in the header "
            f"(columns {', '.join(map(str, positions))}); the file is refused",
            _count_csv(reader),
            RejectReason.MALFORMED,
        )
    kept = [i for i, h in enumerate(header) if h and h not in repeated]
    unnamed = [i for i, h in enumerate(header) if not h]
    unnamed_values = False
    end = reader.line_num
    while True:
        begin = end + 1  # the record's first line: the line after the last record's end
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as error:  # the reader resumes at the next line
            end = reader.line_num
            yield _malformed(source, lines, begin, end, f"csv: {error}", None)
            continue
        end = reader.line_num
        if not values or (len(values) == 1 and not values[0].strip()):
            continue  # blank line
        if any(undecodable(v) for v in values):
            yield Rejected(
                source,
                begin,
                RejectReason.UNREADABLE,
                _encoding_hint(data, encoding),
                {"_raw": [_shown(v) for v in values]},
            )
            continue
        if len(values) != len(header):
            detail = f"expected {len(header)} fields, found {len(values)}"
            yield _malformed(source, lines, begin, end, detail, {"_raw": values})
            continue
        unnamed_values = unnamed_values or any(values[i].strip() for i in unnamed)
        yield SourceRow({header[i]: values[i] for i in kept}, begin)
    ignored = [
        f"column {name!r} appears {counts[name]} times in the header and is not used by "
        "the schema: ignored"
        for name in repeated
    ]
    if unnamed_values:
        shown = ", ".join(str(i + 1) for i in unnamed)
        ignored.append(f"columns with no name in the header ({shown}) hold values: ignored")
    for note in ignored:
        yield Rejected(source, None, RejectReason.IGNORED_COLUMN, f"csv file: {note}", rows=0)


def _remembered(lines: Iterator[str], into: list[str]) -> Iterator[str]:
    """``lines``, each also appended to ``into`` (line ``n`` is ``into[n - 1]``)."""
    for line in lines:
        into.append(line)
        yield line


def _malformed(
    source: str, lines: list[str], begin: int, end: int, detail: str, row: Row | None
) -> Rejected:
    """A Malformed record that starts at line ``begin`` and ends at ``end``: one rejected
    row, or one per non-blank line it spans (see :func:`_csv`)."""
    spanned = sum(1 for text in lines[begin - 1 : end] if text.strip(" \t\r\n"))
    if end <= begin or spanned <= 1:
        return Rejected(source, begin, RejectReason.MALFORMED, detail, row)
    return Rejected(
        source,
        begin,
        RejectReason.MALFORMED,
        f"{detail}; the record spans lines {begin}-{end} (an unterminated or stray quote?), "
        f"counted as {spanned} rejected rows",
        row,
        rows=spanned,
    )


def _count_csv(reader: Iterator[list[str]]) -> int:
    """The records left in ``reader`` (blank lines not counted), at least 1."""
    counted = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return max(counted, 1)
        except csv.Error:
            counted += 1
            continue
        if values and (len(values) > 1 or values[0].strip(" \t\x00")):
            counted += 1


def _shown(text: str) -> str:
    """``text`` with undecodable bytes as U+FFFD, so a rejected row can be stored."""
    return text.replace(_UNDECODABLE, "\ufffd")


def _jsonl(data: bytes, source: str, encoding: str | None) -> Iterator[Row | Rejected]:
    """Records of a JSON Lines file: separated by ``\\n`` only, a ``\\r`` before it
    dropped (JSON Lines spec), so U+2028, U+0085 or a form feed inside a string never
    split a record and line numbers are the file's. A key repeated within a record is
    rejected (which value was meant is unknown)."""
    text = decode_text(data, encoding)
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line.strip(" \t\r"):
            continue
        if undecodable(line):
            yield Rejected(
                source,
                number,
                RejectReason.UNREADABLE,
                _encoding_hint(data, encoding),
                {"_raw": _shown(line)},
            )
            continue
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except _RepeatedKeyError as error:
            yield Rejected(source, number, RejectReason.MALFORMED, str(error), {"_raw": line})
            continue
        except json.JSONDecodeError:
            yield Rejected(source, number, RejectReason.MALFORMED, "not valid JSON", {"_raw": line})
            continue
        if not isinstance(record, dict):
            yield Rejected(
                source, number, RejectReason.MALFORMED, "not a JSON object", {"_raw": record}
            )
            continue
        try:
            # A "\ud800" escape parses to a lone surrogate, which is not text: it could not
            # be stored or hashed (UTF-8), so it would fail the whole collection later.
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            yield Rejected(
                source,
                number,
                RejectReason.MALFORMED,
                "a string holds a lone UTF-16 surrogate escape (not text)",
                {"_raw": _shown(line)},
            )
            continue
        yield SourceRow(record, number)


class _RepeatedKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = Counter(key for key, _ in pairs)
    repeated = [key for key, n in keys.items() if n > 1]
    if repeated:
        raise _RepeatedKeyError(f"key {repeated[0]!r} appears {keys[repeated[0]]} times")
    return dict(pairs)


def _parquet(data: bytes, source: str, limits: ReadLimits) -> Iterator[Row | Rejected]:
    """Rows of a Parquet file, judged from its footer first: the footer's length, its row
    count and its row groups' uncompressed sizes must fit ``limits`` before any column is
    read. Row groups are then decoded a batch at a time, string and binary columns as
    dictionaries; each batch's size as plain values (a dictionary repeats a long string
    cheaply) is added up against the limit before the batch becomes Python rows.

    A row group that does not decode is one :class:`Rejected` counting its rows not yet
    read (the footer says how many), and the next group is read. Without a readable
    footer (e.g. a truncated file) nothing can be read or counted: UnreadableError with
    ``rows=None``. Repeated column names refuse the file (a row is a dict by name)."""
    import pyarrow as pa  # type: ignore[import-untyped]  # lazily: only Parquet needs it
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    if len(data) < 12 or data[-4:] != b"PAR1":
        raise UnreadableError(
            "not a Parquet file, or cut short (no footer): its rows cannot be counted", None
        )
    footer = int.from_bytes(data[-8:-4], "little")
    if footer > limits.max_decompressed_bytes or footer > len(data) - 8:
        raise LimitExceededError(_too_much_data("a Parquet footer of", footer, limits))
    try:
        probe = pq.ParquetFile(io.BytesIO(data))
    except pa.ArrowException as error:
        raise UnreadableError(f"the footer does not decode ({error})", None) from None
    meta = probe.metadata
    rows = int(meta.num_rows)
    if rows > limits.max_rows:
        raise LimitExceededError(_too_many_rows(rows, limits), rows)
    repeated = [n for n, k in Counter(probe.schema_arrow.names).items() if k > 1]
    if repeated:
        raise UnreadableError(
            f"column {repeated[0]!r} appears more than once; the file is refused",
            rows,
            RejectReason.MALFORMED,
        )
    declared = declared_uncompressed_bytes(meta)
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
    decoded, start = 0, 0
    for group in range(meta.num_row_groups):
        size = int(meta.row_group(group).num_rows)
        done = 0
        try:
            for batch in reader.iter_batches(batch_size=_PARQUET_BATCH_ROWS, row_groups=[group]):
                decoded += _plain_size(batch)
                if decoded > limits.max_decompressed_bytes:
                    raise LimitExceededError(
                        _too_much_data("decodes to over", decoded, limits), rows
                    )
                batch_rows = list(_plain_rows(batch))
                for offset, row in enumerate(batch_rows, start=start + done + 1):
                    yield SourceRow(row, offset)
                done += len(batch_rows)
        except (pa.ArrowException, OSError, ValueError) as error:
            yield Rejected(
                source,
                start + done + 1,
                RejectReason.UNREADABLE,
                f"parquet row group {group} (rows {start + 1}-{start + size}): "
                f"{type(error).__name__}; {size - done} rows not read",
                rows=size - done,
            )
        start += size


#: Rows of a Parquet file decoded at a time.
_PARQUET_BATCH_ROWS: Final = 4096


def declared_uncompressed_bytes(meta: Any) -> int:
    """What a Parquet file's footer (``pyarrow.parquet.FileMetaData``) says its row groups
    take uncompressed, in bytes: per group the larger of its total byte size and the sum of
    its columns' uncompressed sizes (a writer may fill in only one). Read before decoding,
    so a small file that would inflate past the limit is refused first."""
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
    return declared


def _plain_size(batch: Any) -> int:
    """Bytes ``batch`` takes with its dictionary columns expanded to plain values."""
    import pyarrow as pa
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    size = 0
    for column in batch.columns:
        if pa.types.is_dictionary(column.type):
            lengths = pc.binary_length(column.dictionary).take(column.indices)
            size += int(pc.sum(lengths).as_py() or 0) + column.indices.nbytes
        else:
            size += int(column.nbytes)
    return size


def _plain_rows(batch: Any) -> Iterator[Row]:
    import pyarrow as pa

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
    dtype: what loading allocates) must fit ``limits``, as must the row count. Arrays
    whose lengths disagree (rows cannot be lined up), an ``X`` of the wrong width or a
    column given twice (in ``X`` and as an array) refuse the archive: UnreadableError
    counting its longest array's rows."""
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise UnreadableError(
            f"not a NumPy archive ({type(error).__name__}): its rows cannot be counted", None
        ) from None
    with archive:
        declared = _check_npz(archive, limits)
        try:
            arrays = {name: archive[name] for name in archive.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            # A member that does not inflate (bad CRC, cut short): the headers said how
            # many rows the archive holds.
            raise UnreadableError(
                f"an array does not load ({type(error).__name__})", declared
            ) from None
    longest = max((len(a) if a.ndim else 1 for a in arrays.values()), default=0)
    if "X" in arrays:
        matrix = arrays.pop("X")
        if matrix.ndim != 2 or matrix.shape[1] != len(columns):
            raise UnreadableError(
                f"X has shape {matrix.shape}, expected (n, {len(columns)})",
                max(longest, 1),
                RejectReason.MALFORMED,
            )
        named: dict[str, Any] = {c: matrix[:, i] for i, c in enumerate(columns)}
        if "y" in arrays:
            named[label] = arrays.pop("y")
        twice = sorted(set(named) & set(arrays))
        if twice:
            raise UnreadableError(
                f"column {twice[0]!r} is both in X (or y) and an array of its own",
                max(longest, 1),
                RejectReason.MALFORMED,
            )
        named.update(arrays)
        arrays = named
    if any(a.ndim == 0 for a in arrays.values()):
        raise UnreadableError(
            "an array is a scalar, not a column", max(longest, 1), RejectReason.MALFORMED
        )
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name}: {n}" for name, n in lengths.items())
        raise UnreadableError(
            f"columns of different lengths ({shown}): rows cannot be lined up",
            longest,
            RejectReason.MALFORMED,
        )
    names = list(arrays)
    for i in range(next(iter(lengths.values()), 0)):
        yield SourceRow({name: arrays[name][i].item() for name in names}, i + 1)


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


def _check_npz(archive: Any, limits: ReadLimits) -> int:
    """Raises LimitExceededError (or ValueError for a malformed header) unless every
    array of ``archive`` (an open ``NpzFile``) fits ``limits``, from headers alone.
    Returns the rows the headers declare (the longest array's length, at least 1)."""
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
    return max(rows, 1)
