"""Where Dataset sources may read in the operator's bucket: an inbox source stays in its
namespace's inbox (checked when the source is resolved, since the CRD cannot see the
namespace), and the reserved roots the API refuses for s3 sources are the real ones."""

from __future__ import annotations

from typing import Any

import pytest

from edgeops.api import RESERVED_BUCKET_ROOTS, DatasetSpec
from edgeops.datasets import layout, retention
from edgeops.datasets.sources import list_batches
from edgeops.policy.serving import model_prefix
from edgeops.policy.training import results_prefix
from edgeops.store.artifacts import BLOB_PREFIX, ObjectInfo

NS, NAME = "team", "imu"


class ListingStore:
    """Records the prefixes listed; holds no objects."""

    bucket = "edgeops"

    def __init__(self) -> None:
        self.listed: list[str] = []

    def list(self, prefix: str, bucket: str | None = None) -> list[ObjectInfo]:
        self.listed.append(prefix)
        return []


def _spec(inbox: dict[str, Any]) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "sources": [{"inbox": inbox}],
            "schema": {"features": [{"name": "ax", "type": "float"}]},
            "governance": {"classification": "internal"},
        }
    )


@pytest.mark.parametrize(
    ("inbox", "listed"),
    [
        ({}, "inbox/team/imu/"),
        ({"prefix": "inbox/team/imu/"}, "inbox/team/imu/"),
        ({"prefix": "inbox/team/"}, "inbox/team/"),
        ({"prefix": "inbox/team/other/"}, "inbox/team/other/"),
    ],
)
def test_inbox_source_reads_within_its_namespace(inbox: dict[str, Any], listed: str) -> None:
    store = ListingStore()
    assert list_batches(_spec(inbox), store, NS, NAME) == []  # type: ignore[arg-type]
    assert store.listed == [listed]


@pytest.mark.parametrize("prefix", ["inbox/otherns/imu/", "inbox/teammate/imu/"])
def test_inbox_source_in_another_namespace_fails_the_collection(prefix: str) -> None:
    store = ListingStore()
    # A ValueError from collect() is what the controller reports as CollectionFailed.
    with pytest.raises(ValueError, match=r"sources\[\]\.inbox\.prefix: .* is outside this "):
        list_batches(_spec({"prefix": prefix}), store, NS, NAME)  # type: ignore[arg-type]
    assert store.listed == []


def test_source_inbox_prefix() -> None:
    assert layout.source_inbox_prefix(NS, NAME, None) == layout.inbox_prefix(NS, NAME)
    assert layout.source_inbox_prefix(NS, NAME, "inbox/team/x/") == "inbox/team/x/"
    with pytest.raises(ValueError, match="inbox/team/"):
        layout.source_inbox_prefix(NS, NAME, "blobs/")


def test_reserved_roots_are_the_operators_roots() -> None:
    def root(key: str) -> str:
        return key.split("/", 1)[0] + "/"

    used = {
        root(BLOB_PREFIX),
        layout.DATASETS_ROOT,
        layout.INBOX_ROOT,
        root(layout.inbox_prefix(NS, NAME)),
        root(results_prefix(NS, "run", "uid")),
        root(model_prefix(NS, "model", "uid")),
        *retention.REFERENCING_PREFIXES,
    }
    assert used == set(RESERVED_BUCKET_ROOTS)
