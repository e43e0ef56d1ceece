"""Issue 17 item 2: naming the operator's bucket must not bypass the reserved-root rule.

The attack: ``s3: {bucket: <the operator's bucket>, prefix: datasets/<other-namespace>/}``.
The API server refuses it for the default bucket name (``edgeops``, see the invalid-spec
corpus); for any other configured name only the operator knows its bucket, so collection
refuses it with ``SourceRefused`` before anything is listed or read."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from edgeops.api import RESERVED_BUCKET_ROOTS, DatasetSpec, Reason
from edgeops.datasets import layout
from edgeops.datasets.sources import SourceRefusedError, list_batches
from edgeops.store.artifacts import ObjectInfo

OPERATOR_BUCKET = "team-ml-data"  # a configured name the CRD cannot know


class RecordingStore:
    """The operator's store: records every listing and read; holds no objects."""

    bucket = OPERATOR_BUCKET

    def __init__(self) -> None:
        self.touched: list[tuple[str, str | None]] = []

    def list(self, prefix: str, bucket: str | None = None) -> list[ObjectInfo]:
        self.touched.append((prefix, bucket))
        return []

    def get_bytes(self, key: str, bucket: str | None = None) -> bytes:
        self.touched.append((key, bucket))
        return b""


def _spec(*s3: dict[str, Any]) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "sources": [{"s3": loc} for loc in s3],
            "schema": {"features": [{"name": "ax", "type": "float"}]},
            "governance": {"classification": "internal"},
        }
    )


@pytest.mark.parametrize(
    "prefix", ["datasets/otherns/", "datasets/", "blobs/sha256/", "inbox/otherns/", "runs", "m"]
)
def test_the_operators_bucket_named_explicitly_is_refused_before_any_read(prefix: str) -> None:
    store = RecordingStore()
    spec = _spec({"bucket": OPERATOR_BUCKET, "prefix": prefix})
    with pytest.raises(SourceRefusedError, match="the operator's own bucket") as info:
        list_batches(spec, store, "team", "imu")  # type: ignore[arg-type]
    assert info.value.reason == Reason.SOURCE_REFUSED
    assert store.touched == []  # nothing listed, nothing read


def test_one_refused_source_stops_the_whole_collection_before_any_read() -> None:
    store = RecordingStore()
    spec = _spec(
        {"bucket": "public-data", "prefix": "raw/"},
        {"bucket": OPERATOR_BUCKET, "prefix": "datasets/otherns/imu/"},
    )
    with pytest.raises(SourceRefusedError):
        list_batches(spec, store, "team", "imu")  # type: ignore[arg-type]
    assert store.touched == []


def test_the_rule_checks_the_resolved_bucket() -> None:
    with pytest.raises(ValueError, match="reserved roots"):
        layout.check_s3_source("configured-bucket", "models/", {"configured-bucket"})
    layout.check_s3_source("another-bucket", "models/", {"configured-bucket"})


@pytest.mark.parametrize(
    ("bucket", "prefix"),
    [("public-data", "datasets/otherns/"), (OPERATOR_BUCKET, "raw/imu/"), (None, "raw/imu/")],
)
def test_other_buckets_and_unreserved_prefixes_are_read(bucket: str | None, prefix: str) -> None:
    store = RecordingStore()
    location = {"prefix": prefix} | ({"bucket": bucket} if bucket else {})
    assert list_batches(_spec(location), store, "team", "imu") == []  # type: ignore[arg-type]
    assert store.touched == [(prefix, bucket)]


@pytest.mark.parametrize("prefix", [*RESERVED_BUCKET_ROOTS, "datasets/otherns/", "raw/../blobs/"])
def test_the_default_bucket_name_is_refused_by_the_model_as_by_the_crd(prefix: str) -> None:
    with pytest.raises(ValidationError, match="in bucket 'edgeops'"):
        _spec({"bucket": "edgeops", "prefix": prefix})
