"""What calibrated drift thresholds cost per measurement, at many features.

    PYTHONPATH=operator .venv/bin/python benchmarks/drift_cost.py [--features 24 64 256]
        [--samples 1000 100000] [--rows 5000] [--repeat 3] [--json]

What runs (pure functions, no cluster)
    A reference of ``--rows`` rows per feature (mixed shapes: Gaussian, skewed, with a
    point mass) profiled with :func:`edgeops.drift.numeric_entry` (binning and the
    chunked design-effect calibration, done once per dataset version), and live counts of
    ``--samples`` readings per feature drawn from the same distributions. Measured, best of
    ``--repeat``:

    * profile: building the profile entries of all features (per dataset version);
    * warm (the baseline): :func:`edgeops.drift.assess_features` with its simulated
      no-drift distributions cached (an LRU keyed by reference and effective n): the
      statistics and verdicts alone;
    * cold: the same call with that cache cleared, as the drift monitor pays it at each
      ``interval`` (the window's sample count changes every time): per feature
      ``max(10000, 20 m / alpha)`` multinomial resamples (at most 200000) of the
      reference at the window's effective n.

    * reconcile path, before: the cold call, which the EdgeModel reconcile made in-line
      until the calibrations moved to a background thread;
    * reconcile path, after (:class:`edgeops.controllers.drift_calibration.Calibrator` as
      the reconcile uses it): ``miss`` is a cold measurement (statistics, then every
      simulation queued: the measurement is Calibrating), ``steady`` the next window of a
      steady fleet (3 % more samples) after the queued simulations and the pre-warming of
      the neighbouring window sizes ran in the background: no simulation on the path.

    Printed: seconds, milliseconds per feature, the ratio cold / warm, and the reconcile
    path's seconds per measurement before and after.
"""

from __future__ import annotations

import os
import sys

# Run as a script, Python puts benchmarks/ first on sys.path, where benchmarks/operator.py
# shadows the standard library's operator module (argparse -> re -> enum imports it).
_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]  # noqa: PTH100

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from edgeops.controllers.drift_calibration import Calibrator  # noqa: E402
from edgeops.drift import assess_features, numeric_entry  # noqa: E402
from edgeops.drift.assess import _null  # noqa: E402  (the cache the monitor misses)
from edgeops.drift.histograms import bin_counts  # noqa: E402


def values(kind: int, n: int, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """``n`` readings of feature shape ``kind % 3``: Gaussian, lognormal, 30 % zeros."""
    if kind % 3 == 0:
        return rng.normal(20.0, 5.0, n)
    if kind % 3 == 1:
        return rng.lognormal(0.0, 0.8, n)
    data = rng.normal(3.0, 1.0, n)
    data[rng.random(n) < 0.3] = 0.0
    return data


def best(repeat: int, call: Callable[[], object]) -> float:
    """The fastest of ``repeat`` timed calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def reconcile_path(
    reference: dict[str, Any],
    live: dict[str, Any],
    n: int,
    m: int,
    rng: np.random.Generator,
    repeat: int,
) -> tuple[float, float, int]:
    """(miss seconds, steady seconds, simulations the steady measurement waited for) of
    the reconcile's measurement with a :class:`Calibrator` whose background work runs
    between measurements (a list of tasks run by hand here)."""
    tasks: list[Callable[[], None]] = []

    def measure(counts: dict[str, Any], calibrator: Calibrator) -> object:
        fleet = assess_features(reference, counts, nulls=calibrator.lookup)
        calibrator.prewarm_around(v.null_key for v in fleet.features if v.null_key)
        return fleet

    misses = []
    for _ in range(repeat):
        start = time.perf_counter()
        measure(live, Calibrator(tasks.append))
        misses.append(time.perf_counter() - start)
        tasks.clear()
    calibrator = Calibrator(tasks.append)
    measure(live, calibrator)
    while tasks:  # the background thread's work, between two measurements
        tasks.pop(0)()
    steady = {}
    for i, (name, entry) in enumerate(reference.items()):
        counts = bin_counts(values(i, round(n * 1.03), rng), np.asarray(entry["edges"]))
        steady[name] = {str(b): float(c) for b, c in enumerate(counts)}
    t_steady = best(repeat, lambda: measure(steady, calibrator))
    fleet = assess_features(reference, steady, nulls=calibrator.lookup)
    waited = sum(v.pending for v in fleet.features)
    return min(misses), t_steady, waited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, nargs="+", default=[24, 64, 256])
    parser.add_argument("--samples", type=int, nargs="+", default=[1000, 100000])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    args = parser.parse_args()
    results = []
    for m in args.features:
        rng = np.random.default_rng(m)
        reference_rows = {f"f{i:03d}": values(i, args.rows, rng) for i in range(m)}

        def profile(rows: dict[str, Any] = reference_rows) -> dict[str, Any]:
            return {name: numeric_entry(list(v)) for name, v in rows.items()}

        t_profile = best(1, profile)
        reference = profile()
        for n in args.samples:
            live = {}
            for i, (name, entry) in enumerate(reference.items()):
                counts = bin_counts(values(i, n, rng), np.asarray(entry["edges"]))
                live[name] = {str(b): float(c) for b, c in enumerate(counts)}

            def cold(live: dict[str, Any] = live, ref: dict[str, Any] = reference) -> object:
                _null.cache_clear()
                return assess_features(ref, live)

            def warm(live: dict[str, Any] = live, ref: dict[str, Any] = reference) -> object:
                return assess_features(ref, live)

            t_cal = best(args.repeat, cold)
            verdict = assess_features(reference, live)
            t_fixed = best(args.repeat, warm)
            t_miss, t_steady, simulated = reconcile_path(reference, live, n, m, rng, args.repeat)
            row = {
                "features": m,
                "samples": n,
                "profile_s": round(t_profile, 3),
                "warm_s": round(t_fixed, 4),
                "cold_s": round(t_cal, 3),
                "cold_ms_per_feature": round(1000 * t_cal / m, 2),
                "ratio": round(t_cal / t_fixed, 1),
                "false_alarms": sum(v.verdict == "Drift" for v in verdict.features),
                "reconcile_before_s": round(t_cal, 3),
                "reconcile_miss_s": round(t_miss, 4),
                "reconcile_steady_s": round(t_steady, 4),
                "steady_simulations": simulated,
            }
            results.append(row)
            if args.json:
                print(json.dumps(row))
            else:
                print(
                    f"{m:4d} features, n={n:>6}: profile {t_profile:6.2f}s | warm "
                    f"{t_fixed:7.4f}s | cold {t_cal:7.3f}s "
                    f"({1000 * t_cal / m:6.2f} ms/feature, x{t_cal / t_fixed:,.0f}) | "
                    f"no-drift features flagged {row['false_alarms']}\n"
                    f"{'':22}reconcile path per measurement: before {t_cal:7.3f}s | after: "
                    f"miss (Calibrating) {t_miss:7.4f}s, steady {t_steady:7.4f}s "
                    f"(x{t_cal / t_steady:,.0f} faster; simulations on the path: {simulated})"
                )


if __name__ == "__main__":
    main()
