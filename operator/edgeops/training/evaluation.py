"""Classification metrics overall and per slice (pure numpy), incl. the fairness gap.

The largest gap between slices in accuracy is the number the EdgeModel fairness gate uses.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeops.api.common import MIN_SLICE_SAMPLES

ECE_BINS = 10
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
    for column, values in (slices or {}).items():
        groups: dict[str, dict[str, float]] = {}
        for value in sorted({str(v) for v in values}):
            mask = np.array([str(v) == value for v in values])
            slice_classes, _ = _per_class(pred[mask], y[mask], classes)
            slice_f1s = [c["f1"] for c in slice_classes.values() if c["support"] > 0]
            groups[value] = {
                "accuracy": float((pred[mask] == y[mask]).mean()),
                "macro_f1": float(np.mean(slice_f1s)) if slice_f1s else 0.0,
                "support": float(mask.sum()),
            }
        result.per_slice[column] = groups
        supported = {
            k: g["accuracy"] for k, g in groups.items() if g["support"] >= MIN_SLICE_SAMPLES
        }
        if len(supported) >= 2:
            best = max(supported, key=lambda k: supported[k])
            worst = min(supported, key=lambda k: supported[k])
            gap = supported[best] - supported[worst]
            if gap > worst_gap:
                worst_gap = gap
                detail = f"{column}: {best}={supported[best]:.3f} vs {worst}={supported[worst]:.3f}"
    result.fairness_gap = float(worst_gap)
    result.fairness_gap_detail = detail
    return result


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
