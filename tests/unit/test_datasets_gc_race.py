"""Garbage collection racing a collection in another handler thread of the same operator:
a collection that reuses an old unreferenced blob while a pass runs must never end up with
a published version whose blobs the pass deleted."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, nullcontext
from datetime import timedelta
from typing import Any

import pytest

from edgeops.datasets import inflight, ingest, layout
from edgeops.datasets.ingest import Outcome, collect
from edgeops.datasets.manifest import parse_manifest
from edgeops.datasets.retention import collect_garbage
from edgeops.store.artifacts import BLOB_PREFIX, ObjectInfo, blob_key
from tests.unit.test_datasets_ingest import HEADER, NOW, ROWS, MemoryStore, _spec

LATER = NOW + timedelta(hours=2)  # past the blob grace period of the old shards


class RacingStore(MemoryStore):
    """Runs ``on_blob_listing`` right after the garbage collector listed the blobs (it has
    read the referenced set by then) and ``on_delete`` when it deletes them."""

    def __init__(self) -> None:
        super().__init__()
        self.on_blob_listing: Callable[[], None] = lambda: None
        self.on_delete: Callable[[list[str]], None] = lambda _keys: None

    def list(self, prefix: str, bucket: str | None = None) -> list[ObjectInfo]:
        found = super().list(prefix, bucket)
        if prefix == BLOB_PREFIX:
            hook, self.on_blob_listing = self.on_blob_listing, lambda: None
            hook()
        return found

    def delete(self, keys: Any) -> int:
        keys = list(keys)
        if any(k.startswith(BLOB_PREFIX) for k in keys):
            hook, self.on_delete = self.on_delete, lambda _keys: None
            hook(keys)
        return super().delete(keys)


def _drop(store: MemoryStore, name: str, dataset: str) -> None:
    key = layout.inbox_prefix("team", dataset) + name
    store.put_bytes(key, (HEADER + "".join(ROWS)).encode())


def _old_orphan_shards(store: MemoryStore) -> set[str]:
    """Publishes the rows as Dataset ``old`` at NOW, then removes that Dataset's documents
    (as deleting the Dataset or retention would): its shards stay, old and unreferenced."""
    _drop(store, "a.csv", "old")
    latest = collect(store, "team", "old", _spec(), NOW).latest
    assert latest is not None
    shas = {
        e.sha256
        for e in parse_manifest(store.get_bytes(layout.manifest_key("team", "old", latest["id"])))
    }
    store.delete([k for k in store.objects if k.startswith(layout.dataset_prefix("team", "old"))])
    return shas


def _publish_imu(store: MemoryStore) -> str:
    """Another Dataset with the same rows: its shards are the old orphans, reused."""
    _drop(store, "b.csv", "imu")
    result = collect(store, "team", "imu", _spec(), LATER)
    assert result.outcome == Outcome.PUBLISHED and result.latest is not None
    return str(result.latest["id"])


def _assert_complete(store: MemoryStore, version: str) -> None:
    manifest = store.get_bytes(layout.manifest_key("team", "imu", version))
    for entry in parse_manifest(manifest):
        assert store.exists(blob_key(entry.sha256))
        assert len(store.get_blob(entry.sha256)) == entry.size


@pytest.fixture(autouse=True)
def _no_leaked_holds() -> Iterator[None]:
    yield
    assert inflight.held() == frozenset()


def test_a_collection_reusing_an_old_blob_during_a_pass_keeps_its_blobs() -> None:
    """The reported interleaving: the pass reads the references, the collection writes its
    marker, finds the old blobs present, writes its manifest; then the pass deletes."""
    store = RacingStore()
    orphans = _old_orphan_shards(store)
    published: list[str] = []
    store.on_blob_listing = lambda: published.append(_publish_imu(store))

    deleted = collect_garbage(store, LATER)

    assert published, "the collection did not run inside the pass"
    assert deleted == 0
    _assert_complete(store, published[0])
    assert orphans <= {k.rsplit("/", 1)[-1] for k in store.objects if k.startswith(BLOB_PREFIX)}
    # The next pass sees the manifest and keeps the blobs for good.
    assert collect_garbage(store, LATER) == 0


def test_without_the_hold_the_same_interleaving_loses_blobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Shows the test above exercises the race: with the hold disabled, the pass deletes
    blobs the just-published version needs."""
    monkeypatch.setattr(ingest, "hold", lambda _shas: nullcontext())
    store = RacingStore()
    orphans = _old_orphan_shards(store)
    published: list[str] = []
    store.on_blob_listing = lambda: published.append(_publish_imu(store))

    assert collect_garbage(store, LATER) == len(orphans)
    manifest = store.get_bytes(layout.manifest_key("team", "imu", published[0]))
    assert not any(store.exists(blob_key(e.sha256)) for e in parse_manifest(manifest))


def test_a_hold_still_open_at_the_final_decision_spares_the_blob() -> None:
    store = RacingStore()
    orphans = _old_orphan_shards(store)
    with ExitStack() as stack:
        store.on_blob_listing = lambda: stack.enter_context(inflight.hold(orphans))
        assert collect_garbage(store, LATER) == 0
        assert inflight.held() == orphans
    assert collect_garbage(store, LATER) == len(orphans)  # released, unreferenced: garbage


def test_a_hold_taken_and_released_before_the_pass_does_not_spare() -> None:
    store = MemoryStore()
    orphans = _old_orphan_shards(store)
    with inflight.hold(orphans):
        pass
    assert collect_garbage(store, LATER) == len(orphans)


def test_a_collection_starting_while_the_pass_deletes_waits_and_uploads_again() -> None:
    """The other order: the pass decided and is deleting when the collection (another
    thread) starts. Registering waits for the delete, so the collection's existence checks
    see the blobs gone and upload them again."""
    store = RacingStore()
    orphans = _old_orphan_shards(store)
    marker_written = threading.Event()
    outcome: list[str] = []

    original_put_json = store.put_json

    def put_json(key: str, document: Any) -> None:
        original_put_json(key, document)
        if "/staging/" in key:
            marker_written.set()

    store.put_json = put_json  # type: ignore[method-assign]
    collector = threading.Thread(target=lambda: outcome.append(_publish_imu(store)))

    def while_deleting(keys: list[str]) -> None:
        assert {k.rsplit("/", 1)[-1] for k in keys} == orphans
        collector.start()
        # The collection must not get past its hold while the pass holds the lock.
        assert not marker_written.wait(0.3)

    store.on_delete = while_deleting
    assert collect_garbage(store, LATER) == len(orphans)
    collector.join(10)
    assert not collector.is_alive() and outcome
    _assert_complete(store, outcome[0])


def test_threads_pass_paused_after_listing_while_a_collection_publishes() -> None:
    """The same race with real threads: the pass stops after listing the blobs until a
    collection in another thread has published."""
    store = RacingStore()
    orphans = _old_orphan_shards(store)
    listed, published = threading.Event(), threading.Event()

    def pause() -> None:
        listed.set()
        assert published.wait(10)

    store.on_blob_listing = pause
    deleted: list[int] = []
    gc = threading.Thread(target=lambda: deleted.append(collect_garbage(store, LATER)))
    gc.start()
    assert listed.wait(10)
    version = _publish_imu(store)
    published.set()
    gc.join(10)
    assert not gc.is_alive() and deleted == [0]
    _assert_complete(store, version)
    assert orphans <= {k.rsplit("/", 1)[-1] for k in store.objects if k.startswith(BLOB_PREFIX)}


def test_holds_nest_and_count() -> None:
    sha = "a" * 64
    with inflight.hold([sha]):
        with inflight.hold([sha]):
            assert inflight.held() == {sha}
        assert inflight.held() == {sha}
    assert inflight.held() == frozenset()


def test_a_hold_from_before_the_pass_released_during_it_still_spares() -> None:
    """A collection held the blobs before the pass began and wrote its manifest after the
    pass read the references: the pass did not see that manifest, so it must spare them."""
    store = RacingStore()
    orphans = _old_orphan_shards(store)
    stack = ExitStack()
    stack.enter_context(inflight.hold(orphans))
    store.on_blob_listing = stack.close
    assert collect_garbage(store, LATER) == 0
    assert inflight.held() == frozenset()
