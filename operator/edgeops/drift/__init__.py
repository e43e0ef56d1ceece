"""Histogram statistics for data drift: reference profiles and distances on binned data.

Pure numpy. A reference histogram fixes its bin edges (quantiles of the reference
data); live data is binned over the same edges, so devices and Prometheus only ever
exchange counts per bin and every distance here works on counts.
"""

from __future__ import annotations

from .distances import jensen_shannon, ks_statistic, psi, wasserstein
from .histograms import (
    CategoricalHistogram,
    NumericHistogram,
    categorical_histogram,
    numeric_histogram,
    quantile_edges,
)

__all__ = [
    "CategoricalHistogram",
    "NumericHistogram",
    "categorical_histogram",
    "jensen_shannon",
    "ks_statistic",
    "numeric_histogram",
    "psi",
    "quantile_edges",
    "wasserstein",
]
