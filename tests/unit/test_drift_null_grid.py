"""The simulated no-drift distributions are reused across windows of nearly the same size
(the drift monitor's window count differs at every measurement)."""

from __future__ import annotations

import numpy as np

from edgeops.drift import assess, numeric_entry
from edgeops.drift.assess import _null, _on_grid
from edgeops.drift.histograms import bin_counts


def test_grid_is_exact_for_small_windows_and_2_percent_apart_above() -> None:
    assert [_on_grid(n) for n in (1, 100, 256)] == [1, 100, 256]
    grid = sorted({_on_grid(n) for n in range(1000, 2001)})
    assert len(grid) == 33  # 32 steps per doubling, both ends included
    steps = np.diff(grid) / np.asarray(grid[:-1])
    assert steps.max() < 0.025
    assert all(abs(_on_grid(n) - n) / n <= 0.011 for n in range(300, 100_000, 997))


def test_windows_a_few_percent_apart_reuse_one_null_distribution() -> None:
    rng = np.random.default_rng(5)
    entry = numeric_entry(list(rng.normal(0, 1, 4000)))
    edges = np.asarray(entry["edges"])
    _null.cache_clear()
    verdicts = []
    for n in (5000, 5030, 5060):  # three measurements of a steady fleet
        counts = bin_counts(rng.normal(0, 1, n), edges)
        live = {str(i): float(c) for i, c in enumerate(counts)}
        verdicts.append(assess(entry, live, alpha=0.01))
    assert _null.cache_info().misses == 1 and _null.cache_info().hits == 2
    assert all(v.verdict == "NoDrift" and v.samples >= 5000 for v in verdicts)
