"""The statistical profile of a version: the reference that drift detection compares
fleet data against.

Format 2 (``PROFILE_FORMAT``): per numeric feature, histograms over
:func:`edgeops.drift.histograms.reference_edges` (point masses in bins of their own, graded
bins beyond the reference range) with ``centers`` and ``binning``; per feature a
``calibration`` of the drift thresholds (design effects of the rows in collection order,
:func:`edgeops.drift.calibration.calibrate`). Format-1 profiles (quantile edges, no
calibration) stay readable: :class:`edgeops.drift.assess.ReferenceFeature` falls back to the
iid null and edge-based Wasserstein positions for them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from edgeops.api import DatasetSchema
from edgeops.drift.profile import categorical_entry, numeric_entry

from .rows import Row

PROFILE_FORMAT = 2


def build_profile(
    rows: Sequence[Row],
    schema: DatasetSchema,
    split_counts: Mapping[str, int],
    bins: int = 10,
) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for feature in schema.features:
        values = [row.get(feature.name) for row in rows]
        if feature.type in ("float", "int"):
            features[feature.name] = numeric_entry(values, bins)
        else:
            features[feature.name] = categorical_entry(values)
    return {
        "format": PROFILE_FORMAT,
        "rows": len(rows),
        "features": features,
        "label": (
            {"column": schema.label, "distribution": class_balance(rows, schema.label)}
            if schema.label
            else None
        ),
        "slices": {
            column: dict(sorted(Counter(str(r.get(column)) for r in rows).items()))
            for column in schema.slice_columns or []
        },
        "splits": dict(split_counts),
    }


def class_balance(rows: Sequence[Row], label: str | None) -> dict[str, int]:
    if not label:
        return {}
    return dict(sorted(Counter(str(r.get(label)) for r in rows).items()))
