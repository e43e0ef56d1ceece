"""Distances between two histograms over the same bins (reference vs live counts).

Every function takes counts, not raw samples, because live data reaches the operator as
Prometheus histogram buckets over the reference profile's edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

#: PSI is undefined for empty bins; a small floor keeps it finite without hiding a bin
#: that emptied out (its term stays large).
EPSILON = 1e-4


def _pair(
    reference: Sequence[float], live: Sequence[float]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(live, dtype=float)
    if ref.shape != cur.shape or ref.ndim != 1 or ref.size == 0:
        raise ValueError(
            f"histograms must have the same number of bins ({ref.shape} vs {cur.shape})"
        )
    if (ref < 0).any() or (cur < 0).any():
        raise ValueError("counts must be non-negative")
    if ref.sum() == 0 or cur.sum() == 0:
        raise ValueError("histograms must not be empty")
    return ref / ref.sum(), cur / cur.sum()


def psi(reference: Sequence[float], live: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population Stability Index: sum((q - p) * ln(q / p)); > 0.2 is commonly 'shifted'."""
    p, q = _pair(reference, live)
    p = np.clip(p, epsilon, None)
    q = np.clip(q, epsilon, None)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(reference: Sequence[float], live: Sequence[float]) -> float:
    """Jensen-Shannon distance with log base 2, so it lies in [0, 1]."""
    p, q = _pair(reference, live)
    m = (p + q) / 2
    divergence = (_kl_bits(p, m) + _kl_bits(q, m)) / 2
    return float(np.sqrt(max(divergence, 0.0)))


def _kl_bits(p: NDArray[np.float64], m: NDArray[np.float64]) -> float:
    # 0 * log(0 / m) is 0 by convention; m > 0 wherever p > 0 because m includes p.
    mask = p > 0
    return float(np.sum(p[mask] * np.log2(p[mask] / m[mask])))


def ks_statistic(reference: Sequence[float], live: Sequence[float]) -> float:
    """Kolmogorov-Smirnov statistic on binned data: the largest gap between the CDFs."""
    p, q = _pair(reference, live)
    return float(np.max(np.abs(np.cumsum(p) - np.cumsum(q))))


def wasserstein(reference: Sequence[float], live: Sequence[float], edges: Sequence[float]) -> float:
    """1-Wasserstein (earth mover's) distance, in the feature's units, between binned data.

    ``edges`` are the inner edges (len = bins - 1). Each bin's mass sits at one point: the
    midpoint of an inner bin, and the edge itself for the two open outer bins (their true
    extent is unknown, which keeps the result finite and conservative).
    """
    p, q = _pair(reference, live)
    inner = np.asarray(edges, dtype=float)
    if inner.size != p.size - 1:
        raise ValueError(f"need {p.size - 1} inner edges for {p.size} bins, got {inner.size}")
    if inner.size == 0:
        return 0.0
    points = np.concatenate(([inner[0]], (inner[:-1] + inner[1:]) / 2, [inner[-1]]))
    cdf_gap = np.abs(np.cumsum(p) - np.cumsum(q))[:-1]
    return float(np.sum(cdf_gap * np.diff(points)))
