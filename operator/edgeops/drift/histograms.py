"""Histograms with fixed, quantile-based bin edges."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

DEFAULT_BINS = 10


def quantile_edges(values: ArrayLike, bins: int = DEFAULT_BINS) -> list[float]:
    """Inner bin edges at the 1/bins .. (bins-1)/bins quantiles, duplicates removed.

    Only inner edges are stored: the outer bins are open (-inf, e0) and [e_last, +inf), so
    live values beyond the reference range still land in a bin instead of being lost.
    Equal-mass bins make PSI sensitive everywhere the reference has data.
    """
    if bins < 1:
        raise ValueError("bins must be >= 1")
    data = _finite(values)
    if data.size == 0 or bins == 1:
        return []
    qs = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(np.quantile(data, qs))
    return [float(e) for e in edges]


def bin_counts(values: ArrayLike, edges: Sequence[float]) -> list[int]:
    """Counts per bin for inner ``edges``: len(edges) + 1 bins, left-closed."""
    data = _finite(values)
    index = np.searchsorted(np.asarray(edges, dtype=float), data, side="right")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return [int(c) for c in counts]


@dataclass(frozen=True)
class NumericHistogram:
    """Counts over fixed inner edges plus the summary statistics of the same data."""

    edges: list[float]
    counts: list[int]
    count: int
    missing: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    quantiles: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "numeric",
            "edges": self.edges,
            "counts": self.counts,
            "count": self.count,
            "missing": self.missing,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "quantiles": self.quantiles,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericHistogram:
        return cls(
            edges=[float(e) for e in data["edges"]],
            counts=[int(c) for c in data["counts"]],
            count=int(data["count"]),
            missing=int(data.get("missing", 0)),
            mean=data.get("mean"),
            std=data.get("std"),
            min=data.get("min"),
            max=data.get("max"),
            quantiles={str(k): float(v) for k, v in (data.get("quantiles") or {}).items()},
        )


@dataclass(frozen=True)
class CategoricalHistogram:
    """Counts per category value (strings, booleans, labels)."""

    counts: dict[str, int]
    count: int
    missing: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "categorical",
            "counts": self.counts,
            "count": self.count,
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoricalHistogram:
        return cls(
            counts={str(k): int(v) for k, v in data["counts"].items()},
            count=int(data["count"]),
            missing=int(data.get("missing", 0)),
        )


def numeric_histogram(
    values: Iterable[float | None],
    bins: int = DEFAULT_BINS,
    edges: Sequence[float] | None = None,
) -> NumericHistogram:
    """Histogram of ``values``; edges from their quantiles unless given (live data)."""
    raw = [v for v in values]
    present = np.asarray([v for v in raw if v is not None], dtype=float)
    finite = present[np.isfinite(present)]
    missing = len(raw) - int(finite.size)
    fixed = list(edges) if edges is not None else quantile_edges(finite, bins)
    if finite.size == 0:
        return NumericHistogram(
            fixed, bin_counts(finite, fixed), 0, missing, None, None, None, None, {}
        )
    quantiles = {
        f"p{int(q * 100)}": float(np.quantile(finite, q)) for q in (0.01, 0.25, 0.5, 0.75, 0.99)
    }
    return NumericHistogram(
        edges=fixed,
        counts=bin_counts(finite, fixed),
        count=int(finite.size),
        missing=missing,
        mean=float(finite.mean()),
        std=float(finite.std()),
        min=float(finite.min()),
        max=float(finite.max()),
        quantiles=quantiles,
    )


def categorical_histogram(values: Iterable[object]) -> CategoricalHistogram:
    """Counts per value, keys as strings (JSON objects need string keys)."""
    raw = list(values)
    counter = Counter(_category(v) for v in raw if v is not None)
    counts = {key: counter[key] for key in sorted(counter)}
    present = sum(counts.values())
    return CategoricalHistogram(counts=counts, count=present, missing=len(raw) - present)


def _category(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _finite(values: ArrayLike) -> NDArray[np.float64]:
    data: NDArray[np.float64] = np.asarray(values, dtype=np.float64).ravel()
    finite: NDArray[np.float64] = data[np.isfinite(data)]
    return finite
