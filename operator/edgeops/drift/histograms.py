"""Histograms over fixed bin edges chosen on the reference data.

Binning of a numeric feature (:func:`reference_edges`, profile format 2):

* **Point masses.** A value that holds at least ``1 / (2 * bins)`` of the reference
  (``POINT_MASS_SHARE``; e.g. a light sensor that reads 0 all night) gets a bin of its own,
  ``[v, next reference value)``, so a shift of that mass stays visible instead of being
  merged into one collapsed quantile bin.
* **Equal mass elsewhere.** The values between point masses are split into bins of about
  ``1 / bins`` of the reference each (quantile binning, as PSI practice and Evidently use).
* **Beyond the reference range.** The bins below the reference minimum and from just above
  the maximum are explicit and graded in units ``s`` of the reference standard deviation:
  ``(-inf, min-16s)``, ``[min-16s, min-4s)``, ``[min-4s, min-s)``, ``[min-s, min)`` and
  ``[max+s/1000, max+s)``, ``[max+s, max+4s)``, ``[max+4s, max+16s)``, ``[max+16s, inf)``.
  Mass beyond the range therefore counts, and a +3 s and a +30 s shift land in different bins
  with different positions for the Wasserstein distance (:attr:`NumericHistogram.centers`).

Only inner edges are stored and sent to devices: ``len(edges) + 1`` left-closed bins
``[e[i-1], e[i])`` (numpy ``searchsorted(..., side="right")``), so the wire format of
format-1 profiles is unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

DEFAULT_BINS = 10

#: A value holding at least this share of ``1 / bins`` of the reference is a point mass.
POINT_MASS_SHARE = 0.5

#: Edges beyond the reference range, in reference standard deviations from min and max.
TAIL_STEPS: tuple[float, ...] = (1.0, 4.0, 16.0)

#: The above-range region starts this many standard deviations above the maximum (a value
#: equal to the maximum, also after a float32 round trip on a device, stays in range).
ABOVE_RANGE_GAP = 1e-3


def quantile_edges(values: ArrayLike, bins: int = DEFAULT_BINS) -> list[float]:
    """Inner edges splitting the reference range into point-mass and equal-mass bins.

    ``values``: reference data (non-finite values are ignored). Returns the sorted start
    values of every bin but the first, so ``len(result) + 1`` left-closed bins cover the
    data: each value of the reference that holds at least ``POINT_MASS_SHARE / bins`` of it
    has a bin ``[v, next value)`` of its own; runs of other values are split into bins of
    about ``1 / bins`` of the data each (cut at the empirical quantiles, never inside a
    run of equal values). Every bin holds at least one reference value. Raises
    ``ValueError`` for ``bins < 1``.
    """
    return _partition(_finite(values), bins)[1:]


def reference_edges(values: ArrayLike, bins: int = DEFAULT_BINS) -> list[float]:
    """Inner edges of a format-2 reference profile: :func:`quantile_edges` inside the
    reference range plus the graded below/above-range edges (module docstring). Empty
    data gives ``[]`` (one bin)."""
    data = _finite(values)
    if data.size == 0:
        return []
    lo, hi, s = float(data.min()), float(data.max()), _scale(data)
    below = [lo - s * k for k in sorted(TAIL_STEPS, reverse=True)]
    above = [hi + s * ABOVE_RANGE_GAP] + [hi + s * k for k in TAIL_STEPS]
    return [*below, *_partition(data, bins), *above]


def _partition(data: NDArray[np.float64], bins: int) -> list[float]:
    """Start values of the in-range bins (the first is the minimum)."""
    if bins < 1:
        raise ValueError("bins must be >= 1")
    if data.size == 0:
        return []
    unique, counts = np.unique(data, return_counts=True)
    total = int(counts.sum())
    heavy = counts >= max(2.0, POINT_MASS_SHARE * total / bins)
    if heavy.sum() > bins:  # keep the ``bins`` heaviest point masses
        heavy &= counts >= np.sort(counts[heavy])[-bins]
    starts: list[int] = []
    i = 0
    while i < unique.size:
        if heavy[i]:
            starts.append(i)
            i += 1
            continue
        j = i
        while j < unique.size and not heavy[j]:
            j += 1
        run = counts[i:j]
        groups = max(1, round(bins * int(run.sum()) / total))
        cumulative = np.cumsum(run)
        targets = cumulative[-1] * np.arange(1, groups) / groups
        cuts = np.searchsorted(cumulative, targets, side="left") + 1
        starts.extend([i, *(i + int(c) for c in np.unique(cuts) if 0 < c < run.size)])
        i = j
    return [float(unique[k]) for k in sorted(set(starts))]


def _scale(data: NDArray[np.float64]) -> float:
    """Reference standard deviation, or a small positive stand-in for a constant feature."""
    std = float(data.std())
    if std > 0:
        return std
    return 1e-3 * max(1.0, float(np.abs(data).max()))


def bin_counts(values: ArrayLike, edges: Sequence[float]) -> list[int]:
    """Counts per bin for inner ``edges``: len(edges) + 1 bins, left-closed."""
    data = _finite(values)
    index = np.searchsorted(np.asarray(edges, dtype=float), data, side="right")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return [int(c) for c in counts]


def bin_centers(values: ArrayLike, edges: Sequence[float]) -> list[float]:
    """Position of each bin's mass for the Wasserstein distance (feature units).

    A bin holding reference data sits at the mean of that data; an empty inner bin at its
    midpoint; an empty open outer bin at its finite edge (its true extent is unknown, so
    the distance is a lower bound there).
    """
    data = _finite(values)
    inner = np.asarray(edges, dtype=float)
    if inner.size == 0:
        return [float(data.mean()) if data.size else 0.0]
    index = np.searchsorted(inner, data, side="right")
    sums = np.bincount(index, weights=data, minlength=inner.size + 1)
    counts = np.bincount(index, minlength=inner.size + 1)
    fallback = np.concatenate(([inner[0]], (inner[:-1] + inner[1:]) / 2, [inner[-1]]))
    with np.errstate(invalid="ignore", divide="ignore"):
        centers = np.where(counts > 0, sums / np.maximum(counts, 1), fallback)
    return [float(c) for c in centers]


@dataclass(frozen=True)
class NumericHistogram:
    """Counts over fixed inner edges plus the summary statistics of the same data.

    ``centers`` (format 2; ``None`` in format-1 profiles): the position of each bin's mass
    (:func:`bin_centers`). ``binning``: how the edges were chosen (format 2), e.g.
    ``{"method": "quantile-pointmass-tails", "bins": 10, "pointMasses": [0.0], "scale": s,
    "tailSteps": [1, 4, 16]}``; ``None`` for edges given by the caller or format-1 profiles.
    """

    edges: list[float]
    counts: list[int]
    count: int
    missing: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    quantiles: dict[str, float]
    centers: list[float] | None = None
    binning: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
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
        if self.centers is not None:
            data["centers"] = self.centers
        if self.binning is not None:
            data["binning"] = self.binning
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericHistogram:
        """Reads format-1 (no ``centers``/``binning``) and format-2 entries."""
        centers = data.get("centers")
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
            centers=[float(c) for c in centers] if isinstance(centers, list) else None,
            binning=dict(data["binning"]) if isinstance(data.get("binning"), dict) else None,
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
    """Histogram of ``values`` (``None`` and non-finite values count as missing; a float
    ndarray is taken as it is, NaN for missing, without a Python list per value).

    Without ``edges`` (a reference): edges from :func:`reference_edges`, with ``centers``
    and ``binning`` recorded. With ``edges`` (live data over a reference's bins): those
    edges, no centers.
    """
    if isinstance(values, np.ndarray):
        # A column (a streamed collection's feature): missing values are NaN already.
        present = np.asarray(values, dtype=float).ravel()
        total = int(present.size)
    else:
        raw = [v for v in values]
        present = np.asarray([v for v in raw if v is not None], dtype=float)
        total = len(raw)
    finite = present[np.isfinite(present)]
    missing = total - int(finite.size)
    reference = edges is None
    fixed = reference_edges(finite, bins) if edges is None else list(edges)
    centers = bin_centers(finite, fixed) if reference else None
    binning = (
        {
            "method": "quantile-pointmass-tails",
            "bins": bins,
            "pointMasses": _point_masses(finite, bins),
            "scale": _scale(finite) if finite.size else None,
            "tailSteps": list(TAIL_STEPS),
        }
        if reference
        else None
    )
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
        centers=centers,
        binning=binning,
    )


def _point_masses(data: NDArray[np.float64], bins: int) -> list[float]:
    """The values :func:`quantile_edges` gave a bin of their own."""
    if data.size == 0:
        return []
    starts = _partition(data, bins)
    counts = bin_counts(data, starts[1:])
    # A bin is a point mass when all its reference data is one value.
    out: list[float] = []
    for start, count in zip(starts, counts, strict=True):
        if count >= 2 and int(np.count_nonzero(data == start)) == count:
            out.append(start)
    return out


def categorical_histogram(values: Iterable[object]) -> CategoricalHistogram:
    """Counts per value, keys as strings (JSON objects need string keys)."""
    raw = list(values)
    counter = Counter(category_label(v) for v in raw if v is not None)
    counts = {key: counter[key] for key in sorted(counter)}
    present = sum(counts.values())
    return CategoricalHistogram(counts=counts, count=present, missing=len(raw) - present)


def category_label(value: object) -> str:
    """The string key a categorical value is counted under (``True`` -> ``"true"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _finite(values: ArrayLike) -> NDArray[np.float64]:
    data: NDArray[np.float64] = np.asarray(values, dtype=np.float64).ravel()
    finite: NDArray[np.float64] = data[np.isfinite(data)]
    return finite
