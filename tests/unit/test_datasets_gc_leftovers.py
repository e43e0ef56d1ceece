"""Leftovers of collections that crashed before their manifest: the staging marker and the
version folder (profile, version info, rejected raw rows) are removed once older than the
grace period; nothing of a published version and nothing younger is touched."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from edgeops.datasets import layout
from edgeops.datasets.ingest import Outcome
from edgeops.datasets.retention import (
    BLOB_GRACE,
    collect_garbage,
    enforce_retention,
    remove_abandoned,
)
from edgeops.store.artifacts import BLOB_PREFIX
from tests.unit.test_datasets_ingest import NAME, NOW, NS, ROWS, MemoryStore, _collect, _drop, _spec

LATER = NOW + timedelta(days=2)
#: One row out of range: rejected, so the crashed version also leaves a rejected.jsonl.
BAD_ROW = "999,500,walk,a\n"


class CrashError(Exception):
    pass


def _crashed(store: MemoryStore) -> str:
    """A collection that dies between the version's data and its manifest; its version id."""
    _drop(store, "a.csv", [*ROWS, BAD_ROW])
    versions: list[str] = []

    def crash(version: str) -> None:
        versions.append(version)
        raise CrashError("operator killed before the manifest")

    with pytest.raises(CrashError):
        _collect(store, before_manifest=crash)
    return versions[0]


def _leftovers(store: MemoryStore, version: str) -> set[str]:
    return {
        k
        for k in store.objects
        if k.startswith(layout.version_prefix(NS, NAME, version))
        or k == layout.staging_key(NS, NAME, version)
    }


def _blobs(store: MemoryStore) -> set[str]:
    return {k for k in store.objects if k.startswith(BLOB_PREFIX)}


def test_crash_leftovers_are_removed_after_the_grace_period_and_free_their_blobs() -> None:
    store = MemoryStore()
    version = _crashed(store)
    leftovers = _leftovers(store, version)
    assert leftovers == {
        layout.staging_key(NS, NAME, version),
        layout.profile_key(NS, NAME, version),
        layout.version_info_key(NS, NAME, version),
        layout.version_rejects_key(NS, NAME, version),
    }
    shards = _blobs(store)
    assert shards
    # The marker names the shards: without removing it they are never collected.
    assert collect_garbage(store, LATER) == 0

    report = enforce_retention(store, NS, NAME, _spec().governance, LATER, set())
    assert report.deleted_leftovers == 4
    assert report.deleted_versions == []
    assert _leftovers(store, version) == set()
    assert collect_garbage(store, LATER) == len(shards)
    assert _blobs(store) == set()


def test_leftovers_are_removed_without_a_retention_period_too() -> None:
    store = MemoryStore()
    version = _crashed(store)
    spec = _spec(governance={"classification": "internal"})
    assert spec.governance.retention_days is None
    report = enforce_retention(store, NS, NAME, spec.governance, LATER, set())
    assert report.deleted_leftovers == 4
    assert _leftovers(store, version) == set()


def test_young_leftovers_may_be_an_ingestion_in_progress_and_stay() -> None:
    store = MemoryStore()
    version = _crashed(store)
    leftovers = _leftovers(store, version)
    for age in (timedelta(0), BLOB_GRACE / 2, BLOB_GRACE - timedelta(seconds=1)):
        assert remove_abandoned(store, NS, NAME, NOW + age) == 0
    assert _leftovers(store, version) == leftovers


def test_an_old_folder_whose_marker_is_young_is_being_collected_again() -> None:
    """A new collection of the same content rewrote the marker and is about to rewrite the
    folder's files: the folder is in use, only its own stale bits would be gone."""
    store = MemoryStore()
    version = _crashed(store)
    store.clock = LATER
    marker = layout.staging_key(NS, NAME, version)
    store.put_json(marker, store.get_json(marker))
    assert remove_abandoned(store, NS, NAME, LATER) == 0
    assert store.exists(layout.profile_key(NS, NAME, version))


def test_an_old_folder_with_one_young_file_stays() -> None:
    store = MemoryStore()
    version = _crashed(store)
    store.delete([layout.staging_key(NS, NAME, version)])
    store.clock = LATER
    store.put_json(layout.profile_key(NS, NAME, version), {"rewritten": True})
    assert remove_abandoned(store, NS, NAME, LATER) == 0
    assert len(_leftovers(store, version)) == 3


def test_nothing_of_a_published_version_is_deleted() -> None:
    """A crash after the manifest but before the marker's removal: the marker is stale and
    goes, the version stays whole."""
    store = MemoryStore()
    _drop(store, "a.csv", [*ROWS, BAD_ROW])
    result = _collect(store)
    assert result.outcome == Outcome.PUBLISHED
    version = result.latest["id"]
    published = _leftovers(store, version)
    marker = layout.staging_key(NS, NAME, version)
    store.put_json(marker, {"version": version, "blobs": []})
    assert remove_abandoned(store, NS, NAME, LATER) == 1
    assert not store.exists(marker)
    assert _leftovers(store, version) == published
    assert store.exists(layout.manifest_key(NS, NAME, version))


def test_a_folder_left_by_an_interrupted_retention_delete_is_removed() -> None:
    """Retention deletes the manifest first; a crash right after leaves the other files."""
    store = MemoryStore()
    _drop(store, "a.csv", ROWS)
    version = _collect(store).latest["id"]
    store.delete([layout.manifest_key(NS, NAME, version)])
    assert remove_abandoned(store, NS, NAME, LATER) == 2  # profile.json, version.json
    assert store.list(layout.version_prefix(NS, NAME, version)) == []


def test_other_datasets_are_not_touched() -> None:
    store = MemoryStore()
    _crashed(store)
    before = dict(store.objects)
    assert remove_abandoned(store, NS, NAME + "-2", LATER) == 0
    assert remove_abandoned(store, "other", NAME, LATER) == 0
    assert store.objects == before


def test_a_collection_after_cleanup_publishes_the_same_version_whole() -> None:
    store = MemoryStore()
    version = _crashed(store)
    remove_abandoned(store, NS, NAME, LATER)
    collect_garbage(store, LATER)
    store.clock = LATER
    result: Any = _collect(store, force=True)
    assert result.outcome == Outcome.PUBLISHED and result.latest["id"] == version
    assert store.exists(layout.version_rejects_key(NS, NAME, version))
    for key in (layout.profile_key, layout.version_info_key, layout.manifest_key):
        assert store.exists(key(NS, NAME, version))
    assert not store.exists(layout.staging_key(NS, NAME, version))
