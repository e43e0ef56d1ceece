"""A collection's accepted rows streamed to disk, then de-duplicated, split, written as
shards and profiled, with memory bounded independently of the data's size.

Rows arrive one source object at a time, in batches: from the vectorised readers of
:mod:`edgeops.datasets.fastpath` (CSV and Parquet whose batches pass every rule in
column form), else from the row readers and :class:`~edgeops.datasets.cleaning.Cleaner`
(the authority on every rule; an object the fast path cannot take whole is rolled back
and read again this way). Each accepted row becomes its shard line (canonical JSON, the
bytes version ids have always been made of) appended to a spill file, plus, per row, a
fixed-size index entry: SHA-256 of the line (32 B), line length and offset in its bucket
file (8 B each), split (1 B), and one value per profiled column (8 B per numeric feature,
4 B code per categorical column) appended to per-column spill files.

:meth:`Spill.finish` then sorts the index by digest (the order a version's rows have
always had), drops repeated digests (de-duplication), copies each split's lines in that
order into its shard file while hashing it, one digest-range bucket file at a time, and
computes the profile one column at a time from its spill file, exactly as
:func:`edgeops.datasets.profile.build_profile` does (the columns are exact, not
sketched: see below).

Memory bound: O(batch) for reading + O(N x ~49 B) of index, N the rows spilled, plus in
:meth:`Spill.finish` the sort order and an 8-byte sort key per row (~16 B/row), one
bucket file (1/64 of the lines) and one profile column (8 B/row) at a time + O(rejected
rows) + O(rows held for a FillMean) + the largest source object's bytes (an object is
downloaded whole, at most ``EDGEOPS_SOURCE_MAX_OBJECT_MIB``). Measured by
``benchmarks/datasets.py`` (collector peak RSS; see the issue-15 note for figures).

Why exact columns, not a quantile sketch: the profile's edges come from the unique
values and point masses of all the data (:func:`edgeops.drift.histograms.reference_edges`)
and its calibration from the bin of every row in order, so a sketch (e.g. Apache
DataSketches KLL) would change today's profiles, which must stay identical; 8 bytes per
row per feature, one feature at a time, stays small long after everything else
(the shards themselves) dominates. A sketch becomes worth it past ~50 M rows.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson
from numpy.typing import NDArray

from edgeops.api import DatasetSchema, Split
from edgeops.canonical_json import sorted_json
from edgeops.drift.histograms import category_label
from edgeops.drift.profile import categorical_entry_codes, numeric_entry

from .cleaning import kept_columns
from .manifest import ManifestEntry
from .profile import PROFILE_FORMAT
from .rows import Row
from .split import SPLITS

#: orjson writes floats exactly as Python's json (``repr``) inside this magnitude range
#: (checked on ~2 M random doubles); outside it (``1e-05`` vs ``0.00001``) rows go through
#: :func:`sorted_json`.
_ORJSON_LOW: Final = 1e-4
_ORJSON_HIGH: Final = 1e16


@dataclass
class Columns:
    """One batch's profiled columns: numeric features as float64 (NaN missing), other
    profiled columns as category-label codes into ``labels`` (-1 missing)."""

    numeric: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    codes: dict[str, tuple[NDArray[np.int64], list[str]]] = field(default_factory=dict)


@dataclass
class Shards:
    """What :meth:`Spill.finish` produced: shard files by manifest key, their entries,
    rows per split, the profile, and the duplicates dropped."""

    files: dict[str, Path]
    entries: list[ManifestEntry]
    split_counts: dict[str, int]
    profile: dict[str, Any]
    rows: int
    duplicates: int

    @property
    def class_balance(self) -> dict[str, int]:
        label = self.profile.get("label")
        return dict(label["distribution"]) if label else {}


class Spill:
    """Accepted rows of one collection on disk under ``directory`` (see module doc).

    Lines are appended to one of :data:`BUCKETS` files by the top bits of their digest,
    so each file holds one range of the final (digest) order and :meth:`finish` sorts and
    copies one file at a time, with NumPy gathers rather than a call per row."""

    def __init__(self, schema: DatasetSchema, split: Split, directory: Path) -> None:
        self.schema = schema
        self.split = split
        self.directory = directory
        self.columns = kept_columns(schema)
        self.numeric = [f.name for f in schema.features if f.type in ("float", "int")]
        self.floats = [f.name for f in schema.features if f.type == "float"]
        categorical = [f.name for f in schema.features if f.type not in ("float", "int")]
        extra = [schema.label] if schema.label else []
        extra += list(schema.slice_columns or [])
        self.categorical = list(dict.fromkeys([*categorical, *extra]))
        self.key_columns = list(schema.row_key or [])
        self._buckets = [(directory / f"lines-{b}").open("w+b") for b in range(BUCKETS)]
        self._bucket_size = np.zeros(BUCKETS, dtype=np.int64)
        self._files = {
            name: (directory / f"col-{i}").open("w+b")
            for i, name in enumerate([*self.numeric, *self.categorical])
        }
        self._labels: dict[str, dict[str, int]] = {name: {} for name in self.categorical}
        # Per row, in spill order (one array per batch).
        self._digests: list[NDArray[np.uint8]] = []
        self._lengths: list[NDArray[np.int64]] = []
        self._offsets: list[NDArray[np.int64]] = []  # within its bucket file
        self._splits: list[NDArray[np.int8]] = []
        self.count = 0

    # ----- adding rows ---------------------------------------------------------------

    def mark(self) -> tuple[int, int, NDArray[np.int64], dict[str, int]]:
        """A point to :meth:`rollback` to (the start of a source object)."""
        return (
            len(self._digests),
            self.count,
            self._bucket_size.copy(),
            {name: handle.tell() for name, handle in self._files.items()},
        )

    def rollback(self, mark: tuple[int, int, NDArray[np.int64], dict[str, int]]) -> None:
        """Forgets every row added since ``mark``."""
        batches, count, sizes, offsets = mark
        del self._digests[batches:], self._splits[batches:], self._lengths[batches:]
        del self._offsets[batches:]
        for bucket, handle in enumerate(self._buckets):
            handle.seek(int(sizes[bucket]))
            handle.truncate()
        self._bucket_size = sizes.copy()
        for name, handle in self._files.items():
            handle.seek(offsets[name])
            handle.truncate()
        self.count = count

    def add_rows(self, rows: Sequence[Row]) -> None:
        """Adds typed rows (the row path): their profiled columns are taken from them."""
        if not rows:
            return
        columns = Columns()
        for name in self.numeric:
            columns.numeric[name] = np.array(
                [math.nan if (v := row.get(name)) is None else float(v) for row in rows],
                dtype=np.float64,
            )
        for name in self.categorical:
            labels: dict[str, int] = {}
            codes = np.array(
                [
                    -1
                    if (v := row.get(name)) is None
                    else labels.setdefault(_label(v), len(labels))
                    for row in rows
                ],
                dtype=np.int64,
            )
            columns.codes[name] = (codes, list(labels))
        self.add([{c: row.get(c) for c in self.columns} for row in rows], columns)

    def add(self, rows: list[Row], columns: Columns) -> None:
        """Adds typed rows holding exactly the kept columns, with their profiled
        ``columns`` (same order)."""
        if not rows:
            return
        lines = _lines(rows, [columns.numeric[n] for n in self.floats])
        keys = (
            _key_lines([[row[c] for c in self.key_columns] for row in rows])
            if self.key_columns
            else None
        )
        data = b"\n".join(lines) + b"\n"
        lengths = np.fromiter((len(x) + 1 for x in lines), np.int64, len(lines))
        self.add_lines(np.frombuffer(data, dtype=np.uint8), lengths, keys, columns)

    def add_lines(
        self,
        data: NDArray[np.uint8],
        lengths: NDArray[np.int64],
        keys: list[bytes] | None,
        columns: Columns,
    ) -> None:
        """Adds rows given as their shard lines: ``data`` holds each line and its newline,
        back to back, ``lengths`` their sizes with the newline; ``keys`` the canonical
        JSON of each row key (None: the row key is the whole row)."""
        n = int(lengths.size)
        if not n:
            return
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        view = memoryview(data.data)
        sha = hashlib.sha256
        digest_bytes = b"".join(
            [
                sha(view[a : a + m - 1]).digest()
                for a, m in zip(starts.tolist(), lengths.tolist(), strict=True)
            ]
        )
        digests = np.frombuffer(digest_bytes, dtype=np.uint8).reshape(n, 32)
        if keys is not None:
            prefixes = np.frombuffer(b"".join([sha(k).digest()[:8] for k in keys]), dtype=">u8")
        else:  # the row key is the whole row: its line, whose digest is known
            prefixes = digests[:, :8].copy().view(">u8").ravel()
        position = prefixes.astype(np.float64) / 2.0**64
        train, validation = self.split.train, self.split.train + self.split.validation
        split = np.where(position < train, 0, np.where(position < validation, 1, 2))
        # Lines grouped by bucket (stable: spill order within a bucket), one write each.
        bucket = digests[:, 0].astype(np.int64) >> _BUCKET_SHIFT
        grouped = np.argsort(bucket, kind="stable")
        gathered = data[_ranges(starts[grouped], lengths[grouped])]
        counts = np.bincount(bucket, minlength=BUCKETS)
        ends = np.cumsum(lengths[grouped])
        offsets = np.zeros(n, dtype=np.int64)
        first = 0
        for b in np.flatnonzero(counts).tolist():
            last = first + int(counts[b])
            begin = int(ends[first - 1]) if first else 0
            chunk = gathered[begin : int(ends[last - 1])]
            rows = grouped[first:last]
            offsets[rows] = self._bucket_size[b] + (ends[first:last] - lengths[rows] - begin)
            self._buckets[b].write(chunk.tobytes())
            self._bucket_size[b] += chunk.size
            first = last
        self._digests.append(digests)
        self._lengths.append(lengths)
        self._offsets.append(offsets)
        self._splits.append(split.astype(np.int8))
        for name in self.numeric:
            self._files[name].write(np.ascontiguousarray(columns.numeric[name]).tobytes())
        for name in self.categorical:
            codes, labels = columns.codes[name]
            known = self._labels[name]
            mapping = np.array(
                [known.setdefault(label, len(known)) for label in labels] + [-1], dtype=np.int64
            )
            self._files[name].write(mapping[codes].astype(np.int32).tobytes())
        self.count += n

    # ----- finishing -------------------------------------------------------------------

    def finish(self, dedupe: bool, bins: int = 10) -> Shards:
        """Sorts, de-duplicates, writes the split shards and profiles (module doc)."""
        n = self.count
        digests = np.concatenate(self._digests) if self._digests else np.zeros((0, 32), np.uint8)
        self._digests = []
        words = digests.view(">u8").reshape(n, 4)
        order = _digest_order(words)
        if dedupe and n > 1:
            # Equal digests are equal rows: keep the first of each run. Only rows whose
            # first 8 bytes equal their predecessor's are compared in full (no copy of
            # every digest in sorted order).
            head = words[order, 0]
            candidates = np.flatnonzero(head[1:] == head[:-1]) + 1
            del head
            same = (words[order[candidates]] == words[order[candidates - 1]]).all(axis=1)
            keep = np.ones(n, dtype=bool)
            keep[candidates[same]] = False
            order = order[keep]
            del keep, candidates, same
        buckets = digests[order, 0].astype(np.int64) >> _BUCKET_SHIFT
        del words, digests
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.concatenate(self._offsets) if self._offsets else np.zeros(0, np.int64)
        splits = np.concatenate(self._splits) if self._splits else np.zeros(0, np.int8)
        bounds = np.searchsorted(buckets, np.arange(BUCKETS + 1))
        paths = {name: self.directory / f"{name}.jsonl" for name in SPLITS}
        hashes = {name: hashlib.sha256() for name in SPLITS}
        sizes: dict[str, int] = dict.fromkeys(SPLITS, 0)
        split_counts: dict[str, int] = dict.fromkeys(SPLITS, 0)
        outputs = {name: paths[name].open("wb") for name in SPLITS}
        try:
            for b in range(BUCKETS):
                rows = order[bounds[b] : bounds[b + 1]]
                if not rows.size:
                    continue
                handle = self._buckets[b]
                handle.flush()
                handle.seek(0)
                held = np.fromfile(handle, dtype=np.uint8)
                for code, name in enumerate(SPLITS):
                    chosen = rows[splits[rows] == code]
                    if not chosen.size:
                        continue
                    chunk = held[_ranges(offsets[chosen], lengths[chosen])].tobytes()
                    hashes[name].update(chunk)
                    outputs[name].write(chunk)
                    sizes[name] += len(chunk)
                    split_counts[name] += int(chosen.size)
                del held
        finally:
            for output in outputs.values():
                output.close()
        files = {f"data/{name}.jsonl": paths[name] for name in SPLITS}
        entries = [
            ManifestEntry(f"data/{name}.jsonl", sizes[name], hashes[name].hexdigest())
            for name in SPLITS
        ]
        profile = self._profile(order, split_counts, bins)
        return Shards(files, entries, split_counts, profile, int(order.size), n - int(order.size))

    def _column(self, name: str, dtype: Any) -> NDArray[Any]:
        handle = self._files[name]
        handle.flush()
        handle.seek(0)
        return np.fromfile(handle, dtype=dtype)

    def _profile(
        self, order: NDArray[np.int64], split_counts: dict[str, int], bins: int
    ) -> dict[str, Any]:
        """:func:`edgeops.datasets.profile.build_profile` of the rows in ``order``."""
        features: dict[str, Any] = {}
        categorical: dict[str, tuple[NDArray[np.int64], list[str]]] = {}
        for name in self.categorical:
            codes = self._column(name, np.int32)[order].astype(np.int64)
            categorical[name] = (codes, list(self._labels[name]))
        for feature in self.schema.features:
            if feature.name in self.numeric:
                features[feature.name] = numeric_entry(
                    self._column(feature.name, np.float64)[order], bins
                )
            else:
                features[feature.name] = categorical_entry_codes(*categorical[feature.name])
        label = self.schema.label
        return {
            "format": PROFILE_FORMAT,
            "rows": int(order.size),
            "features": features,
            "label": (
                {"column": label, "distribution": _counts(*categorical[label])} if label else None
            ),
            "slices": {
                column: _counts(*categorical[column]) for column in self.schema.slice_columns or []
            },
            "splits": dict(split_counts),
        }

    def close(self) -> None:
        for handle in [*self._buckets, *self._files.values()]:
            handle.close()


#: Bucket files of a spill (by the top 6 bits of a row's digest); :meth:`Spill.finish`
#: holds one in memory at a time: 1/64 of the lines, ~4 MB per million rows.
BUCKETS: Final = 64
_BUCKET_SHIFT: Final = 2


def _digest_order(words: NDArray[Any]) -> NDArray[np.int64]:
    """Row indexes sorted by digest (4 big-endian 64-bit words per row): by the first
    word, then, only where first words tie between different digests (vanishingly rare:
    equal rows tie in every word, and their order does not matter), by all four."""
    head = np.ascontiguousarray(words[:, 0])
    order: NDArray[np.int64] = np.argsort(head, kind="stable")
    ranked = head[order]
    ties = np.flatnonzero(ranked[1:] == ranked[:-1])
    del ranked
    if ties.size and not (words[order[ties]] == words[order[ties + 1]]).all():
        order = np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0]))
    return order


def _ranges(starts: NDArray[np.int64], lengths: NDArray[np.int64]) -> NDArray[np.int64]:
    """The indexes of the byte ranges [start, start + length), concatenated."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    shift = np.repeat(starts - (ends - lengths), lengths)
    indexes: NDArray[np.int64] = np.arange(total, dtype=np.int64) + shift
    return indexes


def _label(value: Any) -> str:
    """How a categorical value is counted: features by
    :func:`~edgeops.drift.histograms.category_label`, label and slices by ``str`` (as
    :func:`edgeops.datasets.profile.build_profile`); the same for what these columns hold
    (strings, and booleans only in features: cleaning makes labels and slices strings)."""
    return category_label(value)


def _counts(codes: NDArray[np.int64], labels: list[str]) -> dict[str, int]:
    """Rows per label (sorted by label), as ``Counter(str(v))`` over the rows."""
    counted = np.bincount(codes[codes >= 0], minlength=len(labels))
    missing = int((codes < 0).sum())
    counts = {labels[i]: int(c) for i, c in enumerate(counted) if c}
    if missing:
        counts["None"] = counts.get("None", 0) + missing
    return dict(sorted(counts.items()))


def _lines(rows: list[Row], floats: list[NDArray[np.float64]]) -> list[bytes]:
    """Each row's canonical JSON (:func:`sorted_json`), through orjson where its bytes
    are the same (every float within the range of :data:`_ORJSON_LOW`)."""
    dumps, option = orjson.dumps, orjson.OPT_SORT_KEYS
    try:
        # Copied: orjson's own result keeps a ~4 KiB allocation per line alive (measured:
        # 65,536 rows took 250 MB instead of 10).
        lines = [memoryview(dumps(row, option=option)).tobytes() for row in rows]
    except (TypeError, orjson.JSONEncodeError):
        return [sorted_json(row) for row in rows]
    if floats:
        magnitude = np.abs(np.vstack(floats))
        odd = ((magnitude < _ORJSON_LOW) & (magnitude != 0)) | (magnitude >= _ORJSON_HIGH)
        for i in np.flatnonzero(odd.any(axis=0)).tolist():
            lines[i] = sorted_json(rows[i])
    return lines


def _key_lines(keys: list[list[Any]]) -> list[bytes]:
    """Row keys' canonical JSON (key columns are category strings)."""
    try:
        return [memoryview(orjson.dumps(key)).tobytes() for key in keys]
    except (TypeError, orjson.JSONEncodeError):
        return [sorted_json(key) for key in keys]
