"""Blobs that writers in this process are about to reference, guarded against the garbage
collector running in another thread of the same process.

The race this closes: a collection finds an old, unreferenced blob already in the bucket
(``put_blob`` skips the upload of an existing blob) and reuses it, while a garbage
collection that read the referenced set before that collection's manifest existed deletes
the blob. The grace period cannot help, because the reused blob is old.

The rule: a writer wraps everything from before its first existence check of a blob
(``put_blob``) until after the document that references the blob is written in
``hold(shas)``. The collector wraps its whole pass in ``sweep()`` and decides and deletes
inside ``Sweep.final()``, which holds the same lock. Every blob held at any moment between
the start of a pass and its final decision is spared by that pass, so for each blob either

* the writer registered before the final decision: the pass spares it, and the writer's
  manifest is visible to every later pass (it is written before the hold ends); or
* the pass deleted it before the writer registered: the writer's existence check comes
  after registering, sees the blob missing and uploads it again.

Sparing what was held at any moment (not just what is held at the final decision) matters:
a hold may end - its manifest written - after the pass read the referenced set but before
the final decision, and that manifest is then missing from the pass's referenced set.

This only covers writers in this process; the architecture runs one active operator.
Writers in other processes (training Jobs uploading artifacts before results.json) rely on
the grace period: their blobs are new, so they are younger than the grace period.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

_lock = threading.Lock()
#: SHA-256 -> number of writers currently holding it.
_held: Counter[str] = Counter()
#: Passes in progress; each collects every SHA-256 held while it runs.
_sweeps: set[Sweep] = set()


class Sweep:
    """One garbage-collection pass (see ``sweep``)."""

    def __init__(self) -> None:
        self._touched: set[str] = set()

    @contextmanager
    def final(self) -> Iterator[frozenset[str]]:
        """Holds the registry lock and yields every SHA-256 held at any moment since the
        pass began: decide and delete inside, and no writer can register meanwhile."""
        with _lock:
            yield frozenset(self._touched)


@contextmanager
def hold(shas: Iterable[str]) -> Iterator[None]:
    """Keeps ``shas`` from being garbage-collected by this process until the block ends.
    Enter it before checking whether a blob exists; leave it after the referencing
    document is written."""
    held = list(shas)
    with _lock:
        _held.update(held)
        for running in _sweeps:
            running._touched.update(held)
    try:
        yield
    finally:
        with _lock:
            _held.subtract(held)
            for sha in held:
                if _held[sha] <= 0:
                    del _held[sha]


@contextmanager
def sweep() -> Iterator[Sweep]:
    """One garbage-collection pass: enter it before reading the referenced set."""
    running = Sweep()
    with _lock:
        running._touched.update(_held)
        _sweeps.add(running)
    try:
        yield running
    finally:
        with _lock:
            _sweeps.discard(running)


def held() -> frozenset[str]:
    """What is held right now (diagnostics and tests)."""
    with _lock:
        return frozenset(_held)
