"""One feature's entry of a reference profile (format 2): histogram plus calibration.

:func:`edgeops.datasets.profile.build_profile` writes these per feature; the drift
statistics read them back through :class:`edgeops.drift.assess.ReferenceFeature`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .calibration import calibrate, numeric_bin_array
from .histograms import (
    DEFAULT_BINS,
    CategoricalHistogram,
    categorical_histogram,
    category_label,
    numeric_histogram,
)


def numeric_entry(
    values: Sequence[float | None] | NDArray[np.float64], bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """``values`` in collection order (``None``/NaN are missing; a float ndarray, NaN for
    missing, is used as it is) -> the profile entry: the
    :class:`~edgeops.drift.histograms.NumericHistogram` fields plus ``calibration``."""
    histogram = numeric_histogram(values, bins)
    entry = histogram.to_dict()
    index = numeric_bin_array(values, histogram.edges)
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


def categorical_entry_codes(codes: NDArray[np.int64], labels: Sequence[str]) -> dict[str, Any]:
    """:func:`categorical_entry` from codes: ``codes[i]`` indexes ``labels`` (each a
    :func:`~edgeops.drift.histograms.category_label`, distinct), -1 for missing, in
    collection order. The same entry as :func:`categorical_entry` of the values, without
    a Python object per row."""
    counted = np.bincount(codes[codes >= 0], minlength=len(labels))
    order = sorted(range(len(labels)), key=lambda i: labels[i])
    present = [i for i in order if counted[i] > 0]
    counts = {labels[i]: int(counted[i]) for i in present}
    total = sum(counts.values())
    entry = CategoricalHistogram(counts=counts, count=total, missing=int(codes.size) - total)
    document = entry.to_dict()
    position = np.full(len(labels) + 1, len(present), dtype=np.int64)
    for rank, i in enumerate(present):
        position[i] = rank
    # codes of -1 (missing) pick the last slot: the missing bin after the labels.
    index = position[np.where(codes >= 0, codes, len(labels))]
    document["calibration"] = calibrate(index, len(present) + 1).to_dict()
    return document
