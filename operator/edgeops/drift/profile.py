"""One feature's entry of a reference profile (format 2): histogram plus calibration.

:func:`edgeops.datasets.profile.build_profile` writes these per feature; the drift
statistics read them back through :class:`edgeops.drift.assess.ReferenceFeature`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .calibration import calibrate, numeric_bin_index
from .histograms import DEFAULT_BINS, categorical_histogram, category_label, numeric_histogram


def numeric_entry(values: Sequence[float | None], bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """``values`` in collection order (``None``/NaN are missing) -> the profile entry: the
    :class:`~edgeops.drift.histograms.NumericHistogram` fields plus ``calibration``."""
    histogram = numeric_histogram(values, bins)
    entry = histogram.to_dict()
    index = numeric_bin_index(values, histogram.edges)
    entry["calibration"] = calibrate(index, len(histogram.edges) + 2).to_dict()
    return entry


def categorical_entry(values: Sequence[object]) -> dict[str, Any]:
    """``values`` in collection order (``None`` is missing) -> the profile entry: the
    :class:`~edgeops.drift.histograms.CategoricalHistogram` fields plus ``calibration``."""
    histogram = categorical_histogram(values)
    entry = histogram.to_dict()
    labels = {key: i for i, key in enumerate(histogram.counts)}
    missing = len(labels)
    index = [missing if v is None else labels[category_label(v)] for v in values]
    entry["calibration"] = calibrate(index, missing + 1).to_dict()
    return entry
