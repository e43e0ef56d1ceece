"""Retention of rejected rows, which are raw input and may hold personal data: the rejects
a collection that published nothing (TooManyRejected) leaves under rejected/ are deleted
once last modified before the retention cut-off; a version's own rejected.jsonl goes with
its version."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from edgeops.datasets import layout
from edgeops.datasets.ingest import Outcome
from edgeops.datasets.retention import enforce_retention
from edgeops.store.artifacts import ObjectInfo
from tests.unit.test_datasets_ingest import NAME, NOW, NS, ROWS, MemoryStore, _collect, _drop, _spec

#: The default _spec keeps raw data for 30 days.
RETENTION = timedelta(days=30)
INBOX = layout.inbox_prefix(NS, NAME)


def _bad(start: int) -> list[str]:
    """Ten rows with an unparsable feature: with 20 good ones, far above the 10% limit."""
    return [*ROWS[:20], *(f"{i},oops,walk,a\n" for i in range(start, start + 10))]


def _failed(store: MemoryStore, file: str, start: int) -> str:
    """A collection whose input (all of the inbox) is rejected; the key of its rejects."""
    _drop(store, file, _bad(start))
    result = _collect(store)
    assert result.outcome == Outcome.TOO_MANY_REJECTED
    key = str(result.rejected_uri).removeprefix(f"s3://{store.bucket}/")
    assert key == layout.failed_rejects_key(NS, NAME, result.fingerprint)
    assert store.exists(key)
    return key


def _rejects(store: MemoryStore) -> set[str]:
    return {k for k in store.objects if k.startswith(layout.failed_rejects_prefix(NS, NAME))}


def test_rejects_of_a_failed_collection_are_deleted_after_the_retention_period() -> None:
    store = MemoryStore()
    key = _failed(store, "bad.csv", 100)
    governance = _spec().governance

    report = enforce_retention(store, NS, NAME, governance, NOW + RETENTION, set(), INBOX)
    assert (report.deleted_rejects, report.deleted_raw) == (0, 0)
    assert _rejects(store) == {key}

    later = NOW + RETENTION + timedelta(seconds=1)
    report = enforce_retention(store, NS, NAME, governance, later, set(), INBOX)
    assert report.deleted_rejects == 1
    assert report.deleted_raw == 1  # the inbox file: counted apart from the rejects
    assert report.deleted_versions == [] and report.deleted_leftovers == 0
    assert _rejects(store) == set()


def test_only_rejects_older_than_the_cut_off_go() -> None:
    store = MemoryStore()
    old = _failed(store, "bad.csv", 100)
    store.clock = NOW + timedelta(days=20)
    young = _failed(store, "worse.csv", 200)  # new input, new fingerprint, new file
    assert old != young

    report = enforce_retention(
        store, NS, NAME, _spec().governance, NOW + timedelta(days=31), set(), INBOX
    )
    assert report.deleted_rejects == 1
    assert report.deleted_raw == 1  # bad.csv; worse.csv is 11 days old
    assert _rejects(store) == {young}


def test_a_repeated_failure_does_not_make_the_rejects_younger() -> None:
    """The same input is not collected again, so its rejects are not rewritten: their age
    is that of the copy of the raw rows."""
    store = MemoryStore()
    key = _failed(store, "bad.csv", 100)
    store.clock = NOW + timedelta(days=20)
    again = _collect(store)
    assert again.outcome == Outcome.TOO_MANY_REJECTED and again.repeated

    report = enforce_retention(store, NS, NAME, _spec().governance, NOW + timedelta(days=31), set())
    assert report.deleted_rejects == 1
    assert not store.exists(key)


def test_rejects_stay_without_a_retention_period() -> None:
    store = MemoryStore()
    key = _failed(store, "bad.csv", 100)
    governance = _spec(governance={"classification": "internal"}).governance
    assert governance.retention_days is None
    report = enforce_retention(store, NS, NAME, governance, NOW + timedelta(days=1000), set())
    assert report.deleted_rejects == 0
    assert _rejects(store) == {key}


def test_rejects_of_other_datasets_stay() -> None:
    store = MemoryStore()
    _failed(store, "bad.csv", 100)
    others = {
        layout.failed_rejects_key(NS, NAME + "-2", "f" * 64),  # same name prefix
        layout.failed_rejects_key("other", NAME, "f" * 64),
    }
    for key in others:
        store.put_bytes(key, b'{"row": {}}\n')
    report = enforce_retention(store, NS, NAME, _spec().governance, NOW + timedelta(days=31), set())
    assert report.deleted_rejects == 1
    assert _rejects(store) == set()
    assert all(store.exists(key) for key in others)


class _UndatedRejects(MemoryStore):
    """A store that cannot tell when the rejects were written."""

    def stat(self, key: str, bucket: str | None = None) -> ObjectInfo | None:
        info = super().stat(key, bucket)
        if info is not None and key.startswith(layout.failed_rejects_prefix(NS, NAME)):
            return replace(info, last_modified=None)
        return info


def test_rejects_of_unknown_age_stay() -> None:
    store = _UndatedRejects()
    key = _failed(store, "bad.csv", 100)
    report = enforce_retention(store, NS, NAME, _spec().governance, NOW + timedelta(days=31), set())
    assert report.deleted_rejects == 0
    assert store.exists(key)


def test_a_versions_rejects_go_with_the_expired_version() -> None:
    store = MemoryStore()
    _drop(store, "a.csv", [*ROWS, "999,500,walk,a\n"])  # one row out of range: within limit
    first = _collect(store)
    assert first.outcome == Outcome.PUBLISHED
    expired = first.latest["id"]
    expired_rejects = layout.version_rejects_key(NS, NAME, expired)
    assert store.exists(expired_rejects)
    store.clock = NOW + timedelta(days=40)
    _drop(store, "b.csv", [f"{i},1.5,walk,b\n" for i in range(100, 120)])
    second = _collect(store)
    assert second.outcome == Outcome.PUBLISHED
    latest = second.latest["id"]
    assert latest != expired and store.exists(layout.version_rejects_key(NS, NAME, latest))

    report = enforce_retention(store, NS, NAME, _spec().governance, NOW + timedelta(days=41), set())
    assert report.deleted_versions == [expired]
    assert report.deleted_rejects == 0  # counted with its version, not as a failed one's
    assert not store.exists(expired_rejects)
    assert not any(k.startswith(layout.version_prefix(NS, NAME, expired)) for k in store.objects)
    # The latest version is not expired: its rejects stay with it.
    assert store.exists(layout.version_rejects_key(NS, NAME, latest))
