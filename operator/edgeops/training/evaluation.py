"""Classification metrics overall and per slice (numpy), incl. the fairness gap, each with
its sample count and a 95 % confidence interval (SciPy).

The largest gap between slices in accuracy is the number the EdgeModel fairness gate uses.
Intervals: Wilson score for accuracy (a proportion), Newcombe's hybrid score for the
fairness gap (a difference of two proportions), a percentile bootstrap over the test rows
for macro_f1 and ece (no closed form).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeops.api.common import MIN_SLICE_SAMPLES
from edgeops.policy.intervals import newcombe

ECE_BINS = 10
#: Two-sided level of the intervals the evaluator reports (a gate may recompute a
#: proportion's interval at another level from its counts).
CONFIDENCE = 0.95
#: Bootstrap resamples: the percentile bounds move by well under 0.01 between seeds at this
#: count, and one metric of a few thousand test rows takes well under a second.
BOOTSTRAP_RESAMPLES = 1000
# Slices with fewer test rows than this are reported but do not drive the fairness gap:
# a 3-row slice's accuracy is noise, not a fairness signal.


@dataclass
class Evaluation:
    accuracy: float
    macro_f1: float
    ece: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    per_slice: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    fairness_gap: float = 0.0
    fairness_gap_detail: str = ""
    #: Metric name -> ``MetricInterval`` shape (samples, successes, low, high, confidence,
    #: method, detail) for accuracy, macro_f1, ece and fairness_gap.
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)

    def flat_metrics(self) -> dict[str, float]:
        """The scalar metrics the gates compare (`accuracy`, `macro_f1`, `ece`, ...)."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "ece": self.ece,
            "fairness_gap": self.fairness_gap,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.flat_metrics(),
            "per_class": self.per_class,
            "confusion": self.confusion,
            "per_slice": self.per_slice,
            "fairness_gap_detail": self.fairness_gap_detail,
        }


def expected_calibration_error(
    probs: NDArray[np.floating[Any]], y: NDArray[np.integer[Any]]
) -> float:
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def _per_class(
    pred: NDArray[np.integer[Any]], y: NDArray[np.integer[Any]], classes: list[str]
) -> tuple[dict[str, dict[str, float]], list[list[int]]]:
    n = len(classes)
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (y, pred), 1)
    report: dict[str, dict[str, float]] = {}
    for i, name in enumerate(classes):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i, :].sum() if confusion[i, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": float(confusion[i, :].sum()),
        }
    return report, confusion.tolist()


def wilson_interval(successes: int, samples: int, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The Wilson score interval of ``successes / samples`` in the ``MetricInterval`` shape,
    from ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``; ``samples == 0``
    gives ``[0, 1]``."""
    from scipy.stats import binomtest

    low, high = 0.0, 1.0
    if samples > 0:
        ci = binomtest(successes, samples).proportion_ci(confidence, method="wilson")
        low, high = float(ci.low), float(ci.high)
    return {
        "samples": samples,
        "successes": successes,
        "low": low,
        "high": high,
        "confidence": confidence,
        "method": "wilson",
    }


def bootstrap_interval(
    statistic: Callable[[NDArray[np.intp]], float],
    samples: int,
    bounds: tuple[float, float] = (0.0, 1.0),
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """A percentile bootstrap interval (``scipy.stats.bootstrap``, fixed seed so the same
    test split gives the same interval) of ``statistic(rows)``, where ``rows`` is an array
    of test-row indices drawn with replacement. Fewer than two rows: ``bounds``."""
    from scipy.stats import bootstrap

    low, high = bounds
    if samples >= 2:
        result = bootstrap(
            (np.arange(samples),),
            statistic,
            vectorized=False,
            n_resamples=BOOTSTRAP_RESAMPLES,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(0),
        )
        ci = result.confidence_interval
        low, high = float(ci.low), float(ci.high)
    return {
        "samples": samples,
        "low": low,
        "high": high,
        "confidence": confidence,
        "method": "bootstrap",
    }


def _macro_f1(
    pred: NDArray[np.integer[Any]], y: NDArray[np.integer[Any]], classes: list[str]
) -> float:
    per_class, _ = _per_class(pred, y, classes)
    f1s = [c["f1"] for c in per_class.values() if c["support"] > 0]
    return float(np.mean(f1s)) if f1s else 0.0


def evaluate(
    probs: NDArray[np.floating[Any]],
    y: NDArray[np.integer[Any]],
    classes: list[str],
    slices: dict[str, NDArray[Any]] | None = None,
) -> Evaluation:
    """Metrics of predicted class probabilities `probs` (n x k) against labels `y` (n)."""
    pred = probs.argmax(axis=1)
    per_class, confusion = _per_class(pred, y, classes)
    f1s = [c["f1"] for c in per_class.values() if c["support"] > 0]
    result = Evaluation(
        accuracy=float((pred == y).mean()) if len(y) else 0.0,
        macro_f1=float(np.mean(f1s)) if f1s else 0.0,
        ece=expected_calibration_error(probs, y) if len(y) else 0.0,
        per_class=per_class,
        confusion=confusion,
    )
    worst_gap, detail = 0.0, ""
    worst_pair: tuple[str, tuple[int, int], tuple[int, int]] | None = None
    for column, values in (slices or {}).items():
        groups: dict[str, dict[str, float]] = {}
        counts: dict[str, tuple[int, int]] = {}
        for value in sorted({str(v) for v in values}):
            mask = np.array([str(v) == value for v in values])
            slice_classes, _ = _per_class(pred[mask], y[mask], classes)
            slice_f1s = [c["f1"] for c in slice_classes.values() if c["support"] > 0]
            groups[value] = {
                "accuracy": float((pred[mask] == y[mask]).mean()),
                "macro_f1": float(np.mean(slice_f1s)) if slice_f1s else 0.0,
                "support": float(mask.sum()),
            }
            counts[value] = (int((pred[mask] == y[mask]).sum()), int(mask.sum()))
        result.per_slice[column] = groups
        supported = {
            k: g["accuracy"] for k, g in groups.items() if g["support"] >= MIN_SLICE_SAMPLES
        }
        if len(supported) >= 2:
            # Two distinct slices even when every slice scores the same (a gap of 0 has an
            # interval too).
            ranked = sorted(supported, key=lambda k: (supported[k], k))
            worst, best = ranked[0], ranked[-1]
            gap = supported[best] - supported[worst]
            if worst_pair is None or gap > worst_gap:
                worst_gap = gap
                detail = f"{column}: {best}={supported[best]:.3f} vs {worst}={supported[worst]:.3f}"
                worst_pair = (f"{column}={best} vs {column}={worst}", counts[best], counts[worst])
    result.fairness_gap = float(worst_gap)
    result.fairness_gap_detail = detail
    result.intervals = _intervals(probs, pred, y, classes, worst_pair)
    return result


def _intervals(
    probs: NDArray[np.floating[Any]],
    pred: NDArray[np.integer[Any]],
    y: NDArray[np.integer[Any]],
    classes: list[str],
    worst_pair: tuple[str, tuple[int, int], tuple[int, int]] | None,
) -> dict[str, dict[str, Any]]:
    n = len(y)
    intervals = {
        "accuracy": wilson_interval(int((pred == y).sum()), n),
        "macro_f1": bootstrap_interval(lambda r: _macro_f1(pred[r], y[r], classes), n),
        "ece": bootstrap_interval(lambda r: expected_calibration_error(probs[r], y[r]), n),
    }
    if worst_pair is not None:
        what, best, worst = worst_pair
        low, high = newcombe(best, worst, CONFIDENCE)
        intervals["fairness_gap"] = {
            "samples": best[1] + worst[1],
            "low": low,
            "high": high,
            "confidence": CONFIDENCE,
            "method": "newcombe",
            "detail": f"{what}: {best[0]}/{best[1]} vs {worst[0]}/{worst[1]} correct"[:256],
        }
    return intervals


def per_slice_status(evaluation: Evaluation) -> list[dict[str, Any]]:
    """The per-slice metrics in the TrainingRun status shape (``EvaluationMetrics.perSlice``):
    ``[{"column", "value", "samples", "metrics": {"accuracy", "macro_f1"}}, ...]``, sorted by
    column then value."""
    return [
        {
            "column": column,
            "value": value,
            "samples": int(group["support"]),
            "metrics": {k: v for k, v in group.items() if k != "support"},
        }
        for column, groups in sorted(evaluation.per_slice.items())
        for value, group in sorted(groups.items())
    ]
