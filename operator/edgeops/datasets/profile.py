"""The statistical profile of a version: the reference that drift detection compares
fleet data against (per-feature histograms over fixed quantile edges)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from edgeops.api import DatasetSchema
from edgeops.drift import categorical_histogram, numeric_histogram

from .rows import Row

PROFILE_FORMAT = 1


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
            features[feature.name] = numeric_histogram(values, bins).to_dict()
        else:
            features[feature.name] = categorical_histogram(values).to_dict()
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
