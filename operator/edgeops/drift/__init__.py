"""Histogram statistics for data drift: reference profiles, distances on binned data and
calibrated verdicts.

Pure numpy. A reference histogram fixes its bin edges (point masses, quantiles, graded
bins beyond the reference range); live data is binned over the same edges, so devices and
Prometheus only ever exchange counts per bin and every distance here works on counts.
:func:`assess` / :func:`assess_features` / :func:`combine` turn counts into verdicts
(Drift, NoDrift, Inconclusive) with thresholds calibrated on the reference data.
"""

from __future__ import annotations

from .assess import (
    FeatureVerdict,
    FleetVerdict,
    NullKey,
    NullSource,
    ReferenceFeature,
    Verdict,
    assess,
    assess_features,
    combine,
    grid_neighbours,
    live_from_wire,
    simulate_null,
)
from .calibration import Calibration, calibrate
from .distances import jensen_shannon, ks_statistic, psi, wasserstein
from .histograms import (
    CategoricalHistogram,
    NumericHistogram,
    categorical_histogram,
    numeric_histogram,
    quantile_edges,
    reference_edges,
)
from .profile import categorical_entry, numeric_entry

__all__ = [
    "Calibration",
    "CategoricalHistogram",
    "FeatureVerdict",
    "FleetVerdict",
    "NullKey",
    "NullSource",
    "NumericHistogram",
    "ReferenceFeature",
    "Verdict",
    "assess",
    "assess_features",
    "calibrate",
    "categorical_entry",
    "categorical_histogram",
    "combine",
    "grid_neighbours",
    "jensen_shannon",
    "ks_statistic",
    "live_from_wire",
    "numeric_entry",
    "numeric_histogram",
    "psi",
    "quantile_edges",
    "reference_edges",
    "simulate_null",
    "wasserstein",
]
