"""Bounded reads (issue 17, item 6): crafted small files that expand enormously are
rejected from their headers before they are decompressed, objects over the row or size
limit are rejected whole with a reason that names the setting, and peak memory stays far
below what the file would have taken."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from edgeops.datasets import layout
from edgeops.datasets.ingest import Outcome, collect
from edgeops.datasets.readers import ReadLimits, read_rows
from edgeops.datasets.rows import Rejected, RejectReason
from tests.unit.test_datasets_ingest import HEADER, NAME, NS, ROWS, MemoryStore, _spec

MIB = 1 << 20
LIMITS = ReadLimits(max_object_bytes=4 * MIB, max_decompressed_bytes=16 * MIB, max_rows=1000)


def _peak(read: Callable[[], list[Any]]) -> tuple[list[Any], int]:
    """What ``read`` returns and the peak bytes Python allocated meanwhile (numpy and
    pyarrow report their buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        result = read()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _only_rejection(items: list[Any]) -> Rejected:
    assert len(items) == 1 and isinstance(items[0], Rejected), items[:3]
    rejected = items[0]
    assert rejected.reason == RejectReason.TOO_LARGE
    return rejected


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def test_an_npz_compression_bomb_is_refused_from_its_headers() -> None:
    """256 MiB of zeros compress to ~260 kB (1000:1); loading it would take 256 MiB."""
    bomb = _npz(t=np.zeros(32 * MIB), ax=np.zeros(32 * MIB))  # 2 x 256 MiB of float64
    assert len(bomb) < 600_000
    limits = ReadLimits(4 * MIB, 16 * MIB, max_rows=10**9)
    items, peak = _peak(lambda: list(read_rows(bomb, "npz", "bomb.npz", limits=limits)))
    rejected = _only_rejection(items)
    assert rejected.detail == (
        "arrays of 536871168 bytes, more than 16777216 (EDGEOPS_SOURCE_MAX_DECOMPRESSED_MIB)"
    )
    assert rejected.rows == 32 * MIB  # the rows it declares count as rejected
    assert peak < 2 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_an_npz_whose_zip_entry_lies_about_its_size_is_refused() -> None:
    """A zip member that claims a huge uncompressed size is refused by that claim."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        member = io.BytesIO()
        np.save(member, np.zeros(10))
        archive.writestr("t.npy", member.getvalue())
    data = bytearray(buffer.getvalue())
    # Patch the central directory's uncompressed size (offset 24 of the record) to 1 GiB.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (1 << 30).to_bytes(4, "little")
    rejected = _only_rejection(list(read_rows(bytes(data), "npz", "lie.npz", limits=LIMITS)))
    assert "arrays of 1073741824 bytes" in rejected.detail


def test_an_npz_over_the_row_limit_is_rejected_whole() -> None:
    data = _npz(t=np.arange(5000.0), ax=np.arange(5000.0))
    rejected = _only_rejection(list(read_rows(data, "npz", "long.npz", limits=LIMITS)))
    assert rejected.detail == "5000 rows, more than 1000 (EDGEOPS_SOURCE_MAX_ROWS_PER_OBJECT)"
    assert rejected.rows == 5000
    small = list(read_rows(_npz(t=np.arange(10.0)), "npz", "ok.npz", limits=LIMITS))
    assert len(small) == 10 and not any(isinstance(r, Rejected) for r in small)


def _parquet(table: Any, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", **kwargs)
    return buffer.getvalue()


def test_a_parquet_file_with_many_rows_is_refused_from_its_footer() -> None:
    """Two million constant rows compress to a few kB; their Python rows would take
    hundreds of MiB before the first one came out."""
    data = _parquet(pa.table({"t": np.zeros(2_000_000), "label": ["walk"] * 2_000_000}))
    assert len(data) < 200_000
    items, peak = _peak(lambda: list(read_rows(data, "parquet", "many.pq", limits=LIMITS)))
    rejected = _only_rejection(items)
    assert rejected.detail == ("2000000 rows, more than 1000 (EDGEOPS_SOURCE_MAX_ROWS_PER_OBJECT)")
    assert rejected.rows == 2_000_000
    assert peak < 2 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_a_parquet_file_declaring_a_large_uncompressed_size_is_refused() -> None:
    wide = pa.table({f"c{i}": np.arange(1000.0) for i in range(300)})  # 2.4 MB of float64
    data = _parquet(wide, use_dictionary=False)
    limits = ReadLimits(4 * MIB, 1 * MIB, 1000)
    rejected = _only_rejection(list(read_rows(data, "parquet", "w.pq", limits=limits)))
    assert "declares an uncompressed size of" in rejected.detail
    assert "(EDGEOPS_SOURCE_MAX_DECOMPRESSED_MIB)" in rejected.detail


def test_a_parquet_dictionary_of_long_strings_is_refused_before_it_is_expanded() -> None:
    """1000 rows that all reference one 1 MiB string: the file and its footer are small
    (dictionary encoding), the plain values 1000 MiB."""
    text = "x" * MIB
    data = _parquet(pa.table({"label": [text] * 1000}), use_dictionary=True)
    assert len(data) < 100_000
    items, peak = _peak(lambda: list(read_rows(data, "parquet", "dict.pq", limits=LIMITS)))
    rejected = _only_rejection(items)
    assert "decodes to over" in rejected.detail
    assert peak < 40 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_csv_and_jsonl_over_the_row_limit_are_rejected_whole() -> None:
    csv = (HEADER + "".join(ROWS) * 30).encode()  # 1800 records
    rejected = _only_rejection(list(read_rows(csv, "csv", "long.csv", limits=LIMITS)))
    assert rejected.detail == "1800 rows, more than 1000 (EDGEOPS_SOURCE_MAX_ROWS_PER_OBJECT)"
    assert rejected.rows == 1800
    jsonl = b"".join(json.dumps({"t": i}).encode() + b"\n" for i in range(1001))
    rejected = _only_rejection(list(read_rows(jsonl, "jsonl", "long.jsonl", limits=LIMITS)))
    assert rejected.rows == 1001
    fits = list(read_rows(b"".join(jsonl.splitlines(True)[:1000]), "jsonl", "x", limits=LIMITS))
    assert len(fits) == 1000


def test_an_object_over_the_size_limit_is_rejected() -> None:
    data = (HEADER + "".join(ROWS)).encode()
    limits = ReadLimits(max_object_bytes=100, max_decompressed_bytes=MIB, max_rows=1000)
    rejected = _only_rejection(list(read_rows(data, "csv", "big.csv", limits=limits)))
    assert rejected.detail == f"{len(data)} bytes, more than 100 (EDGEOPS_SOURCE_MAX_OBJECT_MIB)"


class CountingStore(MemoryStore):
    """Records which objects were downloaded."""

    def __init__(self) -> None:
        super().__init__()
        self.downloaded: list[str] = []

    def get_bytes(self, key: str, bucket: str | None = None) -> bytes:
        self.downloaded.append(key)
        return super().get_bytes(key, bucket)


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("EDGEOPS_SOURCE_MAX_OBJECT_MIB", "1")
    monkeypatch.setenv("EDGEOPS_SOURCE_MAX_ROWS_PER_OBJECT", "100")
    yield


def test_a_collection_rejects_large_objects_and_keeps_the_rest(small_limits: None) -> None:
    """Through collect(): an S3 object over the size limit is rejected from its listed
    size without being downloaded; one over the row limit counts its rows as rejected;
    the others are published."""
    store = CountingStore()
    inbox = layout.inbox_prefix(NS, NAME)
    store.put_bytes(inbox + "a.csv", (HEADER + "".join(ROWS)).encode())
    store.put_bytes(inbox + "huge.csv", (HEADER + ROWS[0] * 100_000).encode())  # > 1 MiB
    store.put_bytes(inbox + "long.csv", (HEADER + "".join(ROWS) * 2).encode())  # 120 rows
    spec = _spec(validation={"maxRejectedFraction": 0.9})
    result = collect(store, NS, NAME, spec, store.clock)
    assert result.outcome == Outcome.PUBLISHED and result.accepted == 60
    assert inbox + "huge.csv" not in store.downloaded and inbox + "a.csv" in store.downloaded
    assert result.by_reason == {RejectReason.TOO_LARGE: 1 + 120}
    rejects = store.objects[next(k for k in store.objects if k.endswith("rejected.jsonl"))][0]
    details = [json.loads(line)["detail"] for line in rejects.splitlines()]
    assert any("(EDGEOPS_SOURCE_MAX_OBJECT_MIB); not downloaded" in d for d in details)
    assert any("120 rows, more than 100" in d for d in details)
