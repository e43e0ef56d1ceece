"""Parsing CSV, JSON Lines, Parquet and NumPy archives into rows.

A reader yields a row dict per record, or a :class:`Rejected` for a record it cannot parse,
so one bad line never hides the good ones and every failure is counted.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from edgeops.api import DataFormat

from .rows import Rejected, RejectReason, Row

EXTENSIONS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "parquet": (".parquet", ".pq"),
    "npz": (".npz",),
}


def matches_format(key: str, fmt: DataFormat) -> bool:
    return key.lower().endswith(EXTENSIONS[fmt])


def read_rows(
    data: bytes,
    fmt: DataFormat,
    source: str,
    features: Sequence[str] = (),
    label: str | None = None,
) -> Iterator[Row | Rejected]:
    """Rows of one file. ``features`` and ``label`` name an npz archive's ``X`` columns and
    its ``y`` vector."""
    try:
        if fmt == "csv":
            yield from _csv(data, source)
        elif fmt == "jsonl":
            yield from _jsonl(data, source)
        elif fmt == "parquet":
            yield from _parquet(data)
        else:
            yield from _npz(data, features, label or "label")
    except (UnicodeDecodeError, ValueError, OSError, KeyError, csv.Error) as error:
        # Whatever came before was yielded; the rest of the file is unreadable.
        yield Rejected(source, None, RejectReason.UNREADABLE, f"{fmt} file: {type(error).__name__}")


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


def _parquet(data: bytes) -> Iterator[Row]:
    import pyarrow as pa  # type: ignore[import-untyped]  # lazily: only Parquet needs it
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    try:
        table = pq.read_table(io.BytesIO(data))
    except pa.ArrowException as error:
        raise ValueError(str(error)) from None
    for batch in table.to_batches():
        yield from batch.to_pylist()


def _npz(data: bytes, columns: Sequence[str], label: str) -> Iterator[Row]:
    """Two layouts: one 1-D array per column, or ``X`` (rows x features, in ``columns``
    order) with an optional ``y`` label vector."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
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
