"""Calibration of drift thresholds off the reconcile path.

A calibrated threshold needs the statistic's simulated no-drift distribution at the
window's effective size (:func:`edgeops.drift.simulate_null`, tens of milliseconds per
feature: 1.43 s for a 24-feature model, ``benchmarks/drift_cost.py``). Done inside the
EdgeModel reconcile, a cold measurement held a reconcile worker that long and the
objects queued behind it waited. Here the simulations run in one background thread:

* :meth:`Calibrator.lookup` is the reconcile's :data:`edgeops.drift.NullSource`: it answers
  from the cache or queues the simulation and answers None at once (the measurement is
  then ``Calibrating``, :mod:`edgeops.policy.drift`, and the reconcile requeues after
  :meth:`Calibrator.eta_seconds`);
* :meth:`Calibrator.prewarm` queues, behind every miss, the window sizes a steady fleet
  measures next (the grid neighbours of the ones just used), so a steady-state measurement
  finds its distributions ready and never waits for a simulation.

Bounded: at most ``max_queued`` simulations wait (more are dropped and asked for again at
the next measurement) and the cache keeps at most ``max_bytes`` of distributions (least
recently used go first). One thread, so calibrations never take more than one core from
the operator; numpy holds the interpreter lock only for one feature's simulation at a
time, so a reconcile in another thread waits at most that long for it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Final

import numpy as np
from numpy.typing import NDArray

from edgeops.drift import NullKey, grid_neighbours, simulate_null

log = logging.getLogger(__name__)

#: Grid steps (2.2 % each) pre-warmed on each side of a window size just used: a fleet's
#: window count moving by up to ±4.4 % between measurements needs no new simulation.
PREWARM_STEPS: Final = 2
#: Simulations waiting at most (a 256-feature model with its pre-warm needs 1,280).
MAX_QUEUED: Final = 4096
#: Bytes of simulated distributions kept (8 bytes per resample: 80 kB at 10,000).
MAX_BYTES: Final = 256 * 2**20
#: Seconds per simulation assumed before one has been timed.
FIRST_GUESS_SECONDS: Final = 0.06

#: Runs a task later, elsewhere (a background thread; a list in tests).
Submit = Callable[[Callable[[], None]], object]


class _Thread:
    """One daemon thread running submitted tasks in order (a daemon so that queued
    pre-warming never delays the operator's exit, which a ThreadPoolExecutor would)."""

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    def submit(self, task: Callable[[], None]) -> None:
        with self._lock:
            if not self._started:
                threading.Thread(target=self._run, name="drift-calibration", daemon=True).start()
                self._started = True
        self._tasks.put(task)

    def _run(self) -> None:
        while True:
            self._tasks.get()()


class Calibrator:
    """Simulated no-drift distributions, cached and computed in the background.

    ``submit``: how tasks run (default: one daemon thread); ``simulate``: the simulation
    (default :func:`edgeops.drift.simulate_null`); bounds as in the module docstring.
    Thread-safe."""

    def __init__(
        self,
        submit: Submit | None = None,
        *,
        simulate: Callable[[NullKey], NDArray[np.float64]] = simulate_null,
        max_queued: int = MAX_QUEUED,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._submit = submit or _Thread().submit
        self._simulate = simulate
        self._max_queued = max_queued
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._done: OrderedDict[NullKey, NDArray[np.float64]] = OrderedDict()
        self._bytes = 0
        self._urgent: deque[NullKey] = deque()
        self._later: deque[NullKey] = deque()
        self._queued: set[NullKey] = set()
        self._seconds = FIRST_GUESS_SECONDS
        #: Simulations run so far (for tests and benchmarks).
        self.simulations = 0

    def lookup(self, key: NullKey) -> NDArray[np.float64] | None:
        """The distribution for ``key`` if simulated, else None after queueing it ahead of
        any pre-warming (an :data:`edgeops.drift.NullSource`; never blocks on a
        simulation)."""
        with self._lock:
            found = self._done.get(key)
            if found is not None:
                self._done.move_to_end(key)
                return found
            if key in self._queued:
                if key in self._later:
                    self._later.remove(key)
                    self._urgent.append(key)
                return None
            self._enqueue(key, self._urgent)
        return None

    def prewarm(self, keys: Iterable[NullKey]) -> int:
        """Queue ``keys`` not cached or queued yet, behind every lookup's miss; returns how
        many were queued."""
        queued = 0
        with self._lock:
            for key in keys:
                if key not in self._done and key not in self._queued:
                    queued += self._enqueue(key, self._later)
        return queued

    def prewarm_around(self, keys: Iterable[NullKey], steps: int = PREWARM_STEPS) -> int:
        """:meth:`prewarm` of the grid neighbours of each key's window size (nearest
        first), the sizes a steady fleet measures next."""
        return self.prewarm(
            key.with_live(n) for key in keys for n in grid_neighbours(key.n_live, steps)[1:]
        )

    def queued(self) -> int:
        """Simulations waiting or running."""
        with self._lock:
            return len(self._queued)

    def eta_seconds(self, key_count: int | None = None) -> float:
        """Seconds until ``key_count`` urgent simulations (default: all urgent ones queued)
        are done, from the mean duration measured so far."""
        with self._lock:
            count = len(self._urgent) if key_count is None else key_count
            return count * self._seconds

    def _enqueue(self, key: NullKey, lane: deque[NullKey]) -> int:
        if len(self._queued) >= self._max_queued:
            return 0
        self._queued.add(key)
        lane.append(key)
        self._submit(self._step)
        return 1

    def _step(self) -> None:
        """Simulate the next queued key (urgent ones first); one per submitted task."""
        with self._lock:
            lane = self._urgent or self._later
            if not lane:
                return
            key = lane.popleft()
        started = time.perf_counter()
        try:
            result = self._simulate(key)
        except Exception:
            log.exception("drift calibration of %s at n %d failed", key.method, key.n_live)
            with self._lock:
                self._queued.discard(key)
            return
        elapsed = time.perf_counter() - started
        with self._lock:
            self._queued.discard(key)
            self.simulations += 1
            self._seconds = 0.8 * self._seconds + 0.2 * elapsed
            self._done[key] = result
            self._bytes += result.nbytes
            while self._bytes > self._max_bytes and len(self._done) > 1:
                _, dropped = self._done.popitem(last=False)
                self._bytes -= dropped.nbytes


_shared: Calibrator | None = None
_shared_lock = threading.Lock()


def shared() -> Calibrator:
    """The operator process's calibrator (created at first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Calibrator()
        return _shared
