"""Distances between two histograms over the same bins (reference vs live counts).

Every function takes counts, not raw samples, because live data reaches the operator as
Prometheus counters per bin of the reference profile. :func:`statistic` computes the same
distances for a whole matrix of histograms at once (one per row), which the calibration in
:mod:`edgeops.drift.assess` uses for its resampled null distributions; the scalar functions
are that code on one row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: PSI is undefined for empty bins; a small floor keeps it finite without hiding a bin
#: that emptied out (its term stays large).
EPSILON = 1e-4

Method = Literal["psi", "js", "ks", "wasserstein"]
METHODS: tuple[Method, ...] = ("psi", "js", "ks", "wasserstein")


def _pair(
    reference: Sequence[float], live: Sequence[float]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(live, dtype=float)
    if ref.shape != cur.shape or ref.ndim != 1 or ref.size == 0:
        raise ValueError(
            f"histograms must have the same number of bins ({ref.shape} vs {cur.shape})"
        )
    if not (np.isfinite(ref).all() and np.isfinite(cur).all()):
        raise ValueError("counts must be finite (NaN or infinite count)")
    if (ref < 0).any() or (cur < 0).any():
        raise ValueError("counts must be non-negative")
    if ref.sum() == 0 or cur.sum() == 0:
        raise ValueError("histograms must not be empty")
    return ref / ref.sum(), cur / cur.sum()


def psi(reference: Sequence[float], live: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population Stability Index ``sum((q - p) * ln(q / p))`` (natural log), i.e. the
    Jeffreys divergence KL(q||p) + KL(p||q) of the bin shares, with shares floored at
    ``epsilon``. Conventional reading (Yurdakul 2018, "Statistical properties of the
    population stability index"): < 0.1 stable, > 0.2 shifted; for iid samples of size n
    over k bins, ``n * PSI`` is about chi-square with k - 1 degrees of freedom, so a fixed
    0.2 means very different things at n = 50 and n = 50,000."""
    p, q = _pair(reference, live)
    return float(statistic("psi", p, q[None, :], epsilon=epsilon)[0])


def jensen_shannon(reference: Sequence[float], live: Sequence[float]) -> float:
    """Jensen-Shannon *distance* (square root of the divergence) with **log base 2**, so it
    lies in [0, 1] (1 for disjoint histograms); the same as
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.

    Sampling noise: for n iid live samples over k bins the divergence is about
    chi-square(k - 1) / (8 n ln 2), so the distance of a sample from its own population is
    about ``sqrt((k - 1) / (8 n ln 2))``: 0.13 for k = 10 and n = 100. The former fixed
    threshold 0.1 therefore alarms on most windows of a few hundred samples with no drift;
    use the calibrated rule (:func:`edgeops.drift.assess.assess`)."""
    p, q = _pair(reference, live)
    return float(statistic("js", p, q[None, :])[0])


def ks_statistic(reference: Sequence[float], live: Sequence[float]) -> float:
    """Kolmogorov-Smirnov statistic on binned data: the largest gap between the CDFs at the
    bin edges (a lower bound of the KS statistic of the raw samples). Bounded by 1: it
    saturates once the live mass lies beyond the reference, whatever the distance; use
    Wasserstein for how far."""
    p, q = _pair(reference, live)
    return float(statistic("ks", p, q[None, :])[0])


def wasserstein(
    reference: Sequence[float],
    live: Sequence[float],
    edges: Sequence[float] | None = None,
    *,
    positions: Sequence[float] | None = None,
) -> float:
    """1-Wasserstein (earth mover's) distance, in the feature's units, between binned data
    whose mass sits at one point per bin (``scipy.stats.wasserstein_distance`` with the
    points as values and the counts as weights).

    ``positions`` (len = bins, increasing): the points, e.g. a format-2 profile's
    ``centers``. Without them, from ``edges`` (the inner edges, len = bins - 1): the
    midpoint of an inner bin, and the edge itself for the two open outer bins (their extent
    is unknown, so the result is a lower bound that saturates beyond the reference range;
    format-2 profiles add graded bins there).
    """
    p, q = _pair(reference, live)
    points = bin_positions(p.size, edges, positions)
    return float(statistic("wasserstein", p, q[None, :], positions=points)[0])


def bin_positions(
    bins: int, edges: Sequence[float] | None, positions: Sequence[float] | None = None
) -> NDArray[np.float64]:
    """Point per bin for Wasserstein (see :func:`wasserstein`); ``ValueError`` on a length
    mismatch or decreasing positions."""
    if positions is not None:
        points = np.asarray(positions, dtype=float)
        if points.shape != (bins,):
            raise ValueError(f"need {bins} positions, got {points.size}")
    else:
        if edges is None:
            raise ValueError("wasserstein needs edges or positions")
        inner = np.asarray(edges, dtype=float)
        if inner.size != bins - 1:
            raise ValueError(f"need {bins - 1} inner edges for {bins} bins, got {inner.size}")
        if inner.size == 0:
            return np.zeros(1)
        points = np.concatenate(([inner[0]], (inner[:-1] + inner[1:]) / 2, [inner[-1]]))
    if (np.diff(points) < 0).any():
        raise ValueError("bin positions must not decrease")
    return points


def statistic(
    method: Method,
    reference: ArrayLike,
    live: ArrayLike,
    *,
    positions: ArrayLike | None = None,
    epsilon: float = EPSILON,
) -> NDArray[np.float64]:
    """The distance ``method`` between reference and live shares, row by row.

    ``reference``: shares, shape (k,) or (B, k); ``live``: shares, shape (B, k); rows sum
    to 1 (callers normalise). ``positions`` (k,) is required for ``"wasserstein"``. Returns
    shape (B,). Same formulas as the scalar functions above.
    """
    p = np.atleast_2d(np.asarray(reference, dtype=float))
    q = np.atleast_2d(np.asarray(live, dtype=float))
    if method == "psi":
        pc, qc = np.clip(p, epsilon, None), np.clip(q, epsilon, None)
        out: NDArray[np.float64] = np.sum((qc - pc) * np.log(qc / pc), axis=1)
        return out
    if method == "js":
        m = (p + q) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
            kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
        js: NDArray[np.float64] = np.sqrt(np.maximum((kl_p + kl_q) / 2, 0.0))
        return js
    gap = np.abs(np.cumsum(p, axis=1) - np.cumsum(q, axis=1))
    if method == "ks":
        ks: NDArray[np.float64] = gap.max(axis=1)
        return ks
    if method == "wasserstein":
        if positions is None:
            raise ValueError("wasserstein needs bin positions")
        widths = np.diff(np.asarray(positions, dtype=float))
        w: NDArray[np.float64] = gap[:, :-1] @ widths
        return w
    raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
