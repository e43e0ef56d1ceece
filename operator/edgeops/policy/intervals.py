"""Confidence intervals of proportions, for gates that must not trust a point estimate.

The evaluator (``edgeops.training.evaluation``) computes its intervals with SciPy
(``binomtest(...).proportion_ci(method="wilson")`` and ``scipy.stats.bootstrap``). The
operator does not ship SciPy, and a gate may ask for another confidence level than the
evaluator's 0.95, so the two closed forms the gates recompute from the test counts live
here, with the normal quantile from the standard library. ``tests/unit/test_gate_intervals``
checks them against SciPy.

References: E. B. Wilson (1927), "Probable inference, the law of succession, and
statistical inference", JASA 22; R. G. Newcombe (1998), "Interval estimation for the
difference between independent proportions: comparison of eleven methods", Statistics in
Medicine 17, method 10 (hybrid score).
"""

from __future__ import annotations

import math
from statistics import NormalDist


def z_score(confidence: float) -> float:
    """Two-sided normal quantile for ``confidence`` in (0, 1): 1.95996 for 0.95."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} is outside (0, 1)")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, samples: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` of the proportion ``successes / samples``.
    ``samples == 0`` gives ``(0, 1)`` (nothing is known). Raises ``ValueError`` for
    counts outside ``0 <= successes <= samples``."""
    if not 0 <= successes <= samples:
        raise ValueError(f"{successes} successes of {samples} samples")
    if samples == 0:
        return 0.0, 1.0
    z = z_score(confidence)
    p = successes / samples
    denominator = 1 + z * z / samples
    centre = (p + z * z / (2 * samples)) / denominator
    half = z * math.sqrt(p * (1 - p) / samples + z * z / (4 * samples * samples)) / denominator
    # Clamp float noise: at p = 0 or 1 the bound is exactly 0 or 1.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == samples else min(1.0, centre + half)
    return low, high


def newcombe(
    first: tuple[int, int], second: tuple[int, int], confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval ``(low, high)`` of ``p1 - p2`` for two independent
    proportions given as ``(successes, samples)``, built from their Wilson intervals."""
    p1, p2 = first[0] / max(first[1], 1), second[0] / max(second[1], 1)
    l1, u1 = wilson(*first, confidence)
    l2, u2 = wilson(*second, confidence)
    delta = p1 - p2
    low = delta - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = delta + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)
