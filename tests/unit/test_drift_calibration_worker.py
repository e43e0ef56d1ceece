"""Drift calibration off the reconcile path (edgeops.controllers.drift_calibration): a cold
measurement is Calibrating at once with its statistics, the simulations run elsewhere,
another model is measured meanwhile, and a steady fleet's next window needs none."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from edgeops.api.edgemodel import DriftSummary, DriftTrigger
from edgeops.controllers import drift_monitor
from edgeops.controllers.drift_calibration import Calibrator
from edgeops.drift import NullKey, grid_neighbours, numeric_entry, simulate_null
from edgeops.policy import drift

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TRIGGER = DriftTrigger(enabled=True, min_samples=200, window="10m", interval="1m")


def _profile(seed: int, features: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "format": 2,
        "features": {
            f"f{i}": numeric_entry(list(rng.normal(10 * i, 1 + i, 3000))) for i in range(features)
        },
    }


def _counts(profile: dict[str, Any], n: int, shift: float = 0.0) -> drift.FleetCounts:
    rng = np.random.default_rng(n)
    features = {}
    for i, (name, entry) in enumerate(profile["features"].items()):
        values = rng.normal(10 * i + shift * (1 + i), 1 + i, n)
        index = np.searchsorted(np.asarray(entry["edges"]), values, side="right")
        counts = np.bincount(index, minlength=len(entry["edges"]) + 1)
        features[name] = {str(b): float(c) for b, c in enumerate(counts)}
    return drift.FleetCounts(features, {})


class Manual:
    """A pure scheduler: tasks wait in a list until the test runs them."""

    def __init__(self) -> None:
        self.tasks: list[Callable[[], None]] = []

    def submit(self, task: Callable[[], None]) -> None:
        self.tasks.append(task)

    def run(self) -> int:
        ran = 0
        while self.tasks:
            self.tasks.pop(0)()
            ran += 1
        return ran


def _measure(
    calibrator: Calibrator, profile: dict[str, Any], n: int, **kw: Any
) -> drift.Measurement:
    """One measurement as the monitor makes it: thresholds from the calibrator, then the
    neighbouring window sizes pre-warmed."""
    m = drift.measure(
        TRIGGER, 1, profile, _counts(profile, n, kw.pop("shift", 0.0)), None,
        kw.pop("previous", None), NOW, nulls=calibrator.lookup,
    )  # fmt: skip
    calibrator.prewarm_around(m.null_keys)
    return m


def test_a_cold_measurement_is_calibrating_with_its_numbers_and_simulates_nothing_itself() -> None:
    scheduler = Manual()
    calibrator = Calibrator(scheduler.submit)
    profile = _profile(1)
    cold = _measure(calibrator, profile, 2000)
    assert cold.calibrating == 3 and calibrator.simulations == 0
    status, reason, message = cold.conditions["DataDrift"]
    assert (status, reason) == ("Unknown", "Calibrating")
    assert "3 of 3 features" in message and "psi" in message and "(n 2000)" in message
    assert cold.events == [] and "ConceptDrift" not in cold.conditions
    # The three thresholds first, then the pre-warming of the neighbouring window sizes.
    assert len(scheduler.tasks) == 3 + 3 * 4
    scheduler.run()
    warm = _measure(calibrator, profile, 2000)
    assert warm.calibrating == 0 and warm.summary.verdict == "NoDrift"
    assert warm.conditions["DataDrift"][:2] == ("False", "NoDrift")
    # The same verdicts as simulating in the caller (the default source).
    inline = drift.measure(TRIGGER, 1, profile, _counts(profile, 2000), None, None, NOW)
    assert [f.p_value for f in inline.summary.features] == [
        f.p_value for f in warm.summary.features
    ]


def test_another_model_is_measured_while_a_calibration_waits() -> None:
    scheduler = Manual()
    calibrator = Calibrator(scheduler.submit)
    warm_profile, cold_profile = _profile(2), _profile(3)
    _measure(calibrator, warm_profile, 1500)
    scheduler.run()
    simulated = calibrator.simulations
    waiting = _measure(calibrator, cold_profile, 1500)
    assert waiting.calibrating == 3 and scheduler.tasks  # its simulations have not run
    other = _measure(calibrator, warm_profile, 1500, shift=3.0)
    assert other.calibrating == 0 and other.summary.verdict == "Drift"
    assert calibrator.simulations == simulated  # nothing ran for it


def test_a_running_calibration_does_not_hold_up_a_measurement_in_another_thread() -> None:
    release = threading.Event()
    blocked = threading.Event()
    cold_profile = _profile(5, features=1)

    def simulate(key: NullKey) -> NDArray[np.float64]:
        if key.n_live > 1500:  # the cold model's window (quantile bins look alike)
            blocked.set()
            release.wait(30)
        return simulate_null(key)

    calibrator = Calibrator(simulate=simulate)  # its own background thread
    warm_profile = _profile(4, features=2)
    _measure(calibrator, warm_profile, 1200)
    deadline = time.monotonic() + 30
    while calibrator.queued() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert _measure(calibrator, cold_profile, 3000).calibrating == 1
        assert blocked.wait(10)  # the cold model's simulation is running, and stuck
        started = time.perf_counter()
        other = _measure(calibrator, warm_profile, 1200)
        elapsed = time.perf_counter() - started
        assert other.calibrating == 0 and other.summary.verdict == "NoDrift"
        assert elapsed < 2.0, elapsed  # milliseconds; the simulation blocks forever
    finally:
        release.set()


def test_a_steady_fleet_window_a_few_percent_larger_needs_no_new_simulation() -> None:
    scheduler = Manual()
    calibrator = Calibrator(scheduler.submit)
    profile = _profile(6)
    _measure(calibrator, profile, 4000)
    scheduler.run()
    for n in (4080, 3900, 4150):  # traffic moving by a few percent
        steady = _measure(calibrator, profile, n)
        assert steady.calibrating == 0, n
        scheduler.run()  # pre-warming of the next neighbours only
    assert grid_neighbours(4000, 2)[0] == grid_neighbours(4000, 0)[0]


def test_a_standing_drift_stays_true_while_calibrating() -> None:
    calibrator = Calibrator(Manual().submit)
    previous = DriftSummary(
        version=1, verdict="Drift", measured_at="2026-11-01T11:00:00Z",
        drift_since="2026-11-01T10:00:00Z",
    )  # fmt: skip
    m = _measure(calibrator, _profile(7), 2000, previous=previous)
    status, reason, message = m.conditions["DataDrift"]
    assert (status, reason) == ("True", "DriftDetected")
    assert "since 2026-11-01T10:00:00Z stands" in message and "Calibrating" in message


def test_bounded_queue_and_cache() -> None:
    scheduler = Manual()
    key = NullKey("psi", (10.0, 20.0, 30.0, 0.0), None, 100, 60, 1000, 0)
    calibrator = Calibrator(scheduler.submit, max_queued=2, max_bytes=8 * 1000 * 2)
    assert calibrator.lookup(key) is None and calibrator.lookup(key) is None
    assert calibrator.prewarm(key.with_live(n) for n in (101, 102, 103)) == 1  # bound 2
    assert len(scheduler.tasks) == 2
    scheduler.run()
    found = calibrator.lookup(key)
    assert found is not None and found.shape == (1000,)
    calibrator.prewarm([key.with_live(104), key.with_live(105)])
    scheduler.run()
    # 16 kB hold two distributions of 8 kB: the least recently used went first.
    assert calibrator.lookup(key.with_live(101)) is None
    assert calibrator.lookup(key.with_live(105)) is not None


def test_the_monitor_keeps_status_and_retries_soon_while_calibrating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.unit.test_drift_monitor import _prometheus, _version

    profile = _profile(8, features=1)
    profile["features"] = {"temp": profile["features"]["f0"]}

    monkeypatch.setattr(drift_monitor, "load_profile", lambda sha: profile)
    monkeypatch.setattr(
        drift_monitor,
        "fleet_counts",
        lambda *a: drift.FleetCounts({"temp": _counts(_profile(8, 1), 900).features["f0"]}, {}),
    )
    scheduler = Manual()
    calibrator = Calibrator(scheduler.submit)
    out = drift_monitor.monitor(
        TRIGGER, "ns", "m", _version(), None, NOW, _prometheus([]), calibrator
    )
    assert out.summary is None and out.events == []
    assert out.conditions["DataDrift"][1] == "Calibrating"
    assert out.requeue is not None and 1.0 <= out.requeue <= 30.0
    scheduler.run()
    done = drift_monitor.monitor(
        TRIGGER, "ns", "m", _version(), None, NOW, _prometheus([]), calibrator
    )
    assert done.summary is not None and done.summary.verdict == "NoDrift"
    assert done.requeue == 60.0
