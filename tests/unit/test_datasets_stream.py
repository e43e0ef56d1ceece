"""The streamed collection (spill + vectorised readers) writes the same bytes, version ids
and profiles as the in-memory reference (clean + build_shards + build_profile)."""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgeops.api import DatasetSchema, DatasetSpec, ValidationRules
from edgeops.datasets import builtin, fastpath, layout, pipeline
from edgeops.datasets.cleaning import clean
from edgeops.datasets.ingest import build_shards, collect, unchanged
from edgeops.datasets.manifest import ManifestEntry, parse_manifest, version_id
from edgeops.datasets.profile import build_profile
from edgeops.datasets.readers import ReadLimits, read_rows
from tests.unit.test_datasets_ingest import NOW, MemoryStore

FEATURES = [{"name": "a", "type": "float"}, {"name": "b", "type": "int", "min": -5}]


def _spec(fmt: str, **changes: Any) -> DatasetSpec:
    schema: dict[str, Any] = {"features": FEATURES, "label": "label", "sliceColumns": ["site"]}
    schema.update(changes.pop("schema", {}))
    document: dict[str, Any] = {
        "governance": {"classification": "internal"},
        "format": fmt,
        "sources": [{"s3": {"prefix": "raw/"}}],
        "schema": schema,
        "validation": {"maxRejectedFraction": 0.5},
    }
    document.update(changes)
    return DatasetSpec.model_validate(document)


def _csv(rows: int, seed: int, *, tiny: bool = False, tail: str = "") -> bytes:
    rng = np.random.default_rng(seed)
    lines = ["a, b ,label,site"]
    for i in range(rows):
        a = float(rng.normal()) * (1e-6 if tiny and i % 5 == 0 else 1e3 if i % 11 == 0 else 1)
        lines.append(f"{a!r},{int(rng.integers(-5, 5))},{['walk', 'run'][i % 2]},s{i % 3}")
    lines += lines[1:6]  # duplicates
    return ("\n".join(lines) + "\n" + tail).encode()


def _parquet(rows: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    table = pa.table(
        {
            "a": rng.normal(size=rows) * 1e11,  # beyond Arrow's float text: orjson's way
            "b": rng.integers(-5, 5, rows),
            "label": [f'c"{i % 2}' for i in range(rows)],  # needs an escape
            "site": rng.integers(0, 3, rows),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=1000)
    return sink.getvalue()


def _reference(
    spec: DatasetSpec, objects: dict[str, bytes]
) -> tuple[str, dict[str, Any], dict[str, int], dict[str, Any]]:
    """Version id, profile, split counts and counts as the in-memory path computes them."""
    assert spec.data_schema is not None
    schema = spec.data_schema
    batches = [
        (
            f"s3://edgeops/{key}",
            read_rows(data, spec.format, f"s3://edgeops/{key}", ["a", "b"], "label"),
        )
        for key, data in sorted(objects.items())
    ]
    cleaned = clean(batches, schema, spec.validation)
    shards, counts = build_shards(cleaned.accepted, schema, spec)
    entries = [ManifestEntry.of(key, data) for key, data in shards.items()]
    summary = {
        "accepted": len(cleaned.accepted),
        "duplicates": cleaned.duplicates,
        "rejected": cleaned.invalid_count,
        "byReason": cleaned.rejected_by_reason,
        "coercions": dict(cleaned.coercions),
    }
    return version_id(entries), build_profile(cleaned.accepted, schema, counts), counts, summary


CASES = {
    # Vectorised CSV (two objects, duplicates across them), and one with tiny floats.
    "csv": (_spec("csv"), {"raw/1.csv": _csv(3000, 1), "raw/2.csv": _csv(2000, 2, tiny=True)}),
    # A bad record after the first block: the object is rolled back and read by rows.
    "csv-rolled-back": (
        _spec("csv"),
        {"raw/1.csv": _csv(4000, 3, tail="oops,1,walk,s1\n 2.5,1,walk,s1\n1,2,1.0,s2\n")},
    ),
    "csv-row-key": (
        _spec("csv", schema={"rowKey": ["site", "label"]}),
        {"raw/1.csv": _csv(500, 4)},
    ),
    "csv-fill-mean": (
        _spec("csv", validation={"missingValues": "FillMean", "maxRejectedFraction": 0.5}),
        {"raw/1.csv": _csv(300, 5, tail="1.5,,run,s1\n"), "raw/2.csv": _csv(200, 6)},
    ),
    "csv-no-dedupe": (
        _spec("csv", validation={"dedupe": False, "maxRejectedFraction": 0.5}),
        {"raw/1.csv": _csv(300, 7)},
    ),
    "parquet": (_spec("parquet"), {"raw/1.parquet": _parquet(2500, 8)}),
    "jsonl": (
        _spec("jsonl"),
        {
            "raw/1.jsonl": b'{"a": 1.5, "b": 2, "label": "x", "site": "s"}\n{"a": 1e-7, "b": 1, '
            b'"label": 1.0, "site": "s"}\n'
        },
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_streamed_collection_matches_the_in_memory_reference(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastpath, "_CSV_BLOCK", 16 << 10)  # several batches per object
    monkeypatch.setattr(pipeline, "FAST_MIN_BYTES", 0)
    spec, objects = CASES[case]
    store = MemoryStore()
    for key, data in objects.items():
        store.put_bytes(key, data)
    result = collect(store, "ns", "ds", spec, NOW)
    version, profile, counts, summary = _reference(spec, objects)
    assert {key: result.summary()[key] for key in summary} == summary
    assert result.latest is not None
    assert result.latest["id"] == version
    assert result.latest["splits"] == counts
    assert store.get_json(layout.profile_key("ns", "ds", version)) == profile
    manifest = parse_manifest(store.get_bytes(layout.manifest_key("ns", "ds", version)))
    for entry in manifest:  # every shard is stored under its hash, with its size
        assert len(store.get_blob(entry.sha256)) == entry.size


def test_regular_csv_and_parquet_are_read_vectorised(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "FAST_MIN_BYTES", 0)
    store = MemoryStore()
    store.put_bytes("raw/1.csv", _csv(100, 1))
    store.put_bytes("raw/2.csv", _csv(100, 2, tail="x,1,walk,s1\n"))  # rows way
    with caplog.at_level(logging.INFO, logger="edgeops.datasets.pipeline"):
        collect(store, "ns", "ds", _spec("csv"), NOW)
    assert "read 1 objects vectorised" in caplog.text


SCHEMA = DatasetSchema.model_validate({"features": FEATURES, "label": "label"})
LIMITS = ReadLimits(1 << 30, 1 << 30, 10**7)


@pytest.mark.parametrize(
    "body",
    [
        b"a,b,label\n1.5,1,walk\n 2.5,1,walk\n",  # padded number: the row path strips it
        b"a,b,label\n1.5,,walk\n",  # missing value
        b"a,b,label\n1.5,1,1.0\n",  # a label that cleaning rewrites ("1")
        b"a,b,label\n1.5,+1,walk\n",  # int text Arrow does not read
        b"a,b,label\n1_5,1,walk\n",  # Python-only float text
        b"a,b,label\ninf,1,walk\n",  # not finite
        b"a,b,label\n1.5,-9,walk\n",  # out of range
        b"a,a,b,label\n1,1.5,1,walk\n",  # repeated column
        b"a,b\n1.5,1\n",  # missing column
        b'"a\nb",b,label\n1,1,walk\n',  # header over two lines
    ],
)
def test_the_fast_path_leaves_anything_irregular_to_the_row_path(body: bytes) -> None:
    with pytest.raises(fastpath.NotFastError):
        list(fastpath.batches(body, "csv", None, SCHEMA, ValidationRules(), LIMITS))


def test_the_fast_path_counts_the_coercions_of_the_row_path() -> None:
    body = b"a,b,label\n1.5,1,walk\n2,3,run\n"
    (batch,) = fastpath.batches(body, "csv", None, SCHEMA, ValidationRules(), LIMITS)
    reference = clean([("f", read_rows(body, "csv", "f"))], SCHEMA, ValidationRules())
    assert batch.coercions == reference.coercions
    assert batch.lines is not None
    data, lengths = batch.lines
    assert data.tobytes() == b'{"a":1.5,"b":1,"label":"walk"}\n{"a":2.0,"b":3,"label":"run"}\n'
    assert lengths.tolist() == [31, 30]


BUILTIN = DatasetSpec.model_validate(
    {
        "governance": {"classification": "public"},
        "sources": [{"builtin": {"name": "italy-power-demand"}}],
    }
)


def test_an_unchanged_builtin_source_needs_no_collection_job() -> None:
    """An operator restart asks :func:`unchanged` before starting a Job: for a built-in
    dataset already collected the answer is the last result again, not a new Job."""
    store = MemoryStore()
    first = collect(store, "ns", "ds", BUILTIN, NOW)
    assert first.new_version
    repeated = unchanged(store, "ns", "ds", BUILTIN)
    assert repeated is not None and repeated.repeated
    assert repeated.outcome == "NoNewData"
    assert repeated.latest == first.latest and repeated.accepted == first.accepted


def test_a_builtin_source_not_installed_here_is_left_to_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    collect(store, "ns", "ds", BUILTIN, NOW)

    def missing(name: str) -> None:
        raise builtin.BuiltinUnavailableError(f"{name}: not installed")

    monkeypatch.setattr(builtin, "load", missing)
    assert unchanged(store, "ns", "ds", BUILTIN) is None


def test_rows_are_ordered_by_the_whole_digest_even_when_first_words_tie() -> None:
    from edgeops.datasets.stream import _digest_order

    words = np.array(
        [[5, 9, 0, 0], [5, 2, 0, 0], [1, 7, 7, 7], [5, 2, 0, 0], [3, 0, 0, 1]], dtype=">u8"
    )
    order = _digest_order(words).tolist()
    assert [words[i].tolist() for i in order] == sorted(w.tolist() for w in words)
