"""Gates that know what stands behind a number (issue 16, item 11): every gated metric is
reported with its sample count and confidence interval, and a gate with ``confidence``
requires the interval's bound to clear the threshold, with the numbers in its message."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.stats import binomtest

from edgeops.api.common import EvaluationMetrics, MetricInterval, SliceMetrics
from edgeops.api.edgemodel import EdgeModelSpec, Gates, ModelVersion
from edgeops.policy import gates
from edgeops.policy.intervals import newcombe, wilson
from edgeops.training.evaluation import evaluate, wilson_interval


def _spec(**gate_spec: Any) -> EdgeModelSpec:
    return EdgeModelSpec.model_validate(
        {
            "training": {"datasetRef": {"name": "d"}, "exports": ["onnx"]},
            "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
            "gates": gate_spec,
        }
    )


def _check(verdict: Any, name: str) -> Any:
    return next(c for c in verdict.checks if c.name == name)


def _twelve_of_twelve() -> EvaluationMetrics:
    # The demo's BasicMotions model: every one of its 12 test rows right.
    return EvaluationMetrics(
        overall={"accuracy": 1.0},
        intervals={"accuracy": MetricInterval.model_validate(wilson_interval(12, 12))},
    )


@pytest.mark.parametrize(
    ("successes", "samples", "confidence"),
    [(12, 12, 0.95), (0, 5, 0.9), (7, 10, 0.99), (141, 150, 0.95), (1, 1000, 0.8)],
)
def test_the_operator_wilson_interval_is_scipys(
    successes: int, samples: int, confidence: float
) -> None:
    expected = binomtest(successes, samples).proportion_ci(confidence, method="wilson")
    low, high = wilson(successes, samples, confidence)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


def test_newcombe_interval_of_a_difference_of_proportions() -> None:
    # Newcombe (1998), table II example (h): 56/70 vs 48/80 -> 0.0524 .. 0.3339.
    low, high = newcombe((56, 70), (48, 80))
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


def test_accuracy_12_of_12_fails_a_gate_that_requires_the_lower_bound() -> None:
    point = _spec(absolute=[{"metric": "accuracy", "op": ">=", "threshold": 0.85}])
    bound = _spec(
        absolute=[{"metric": "accuracy", "op": ">=", "threshold": 0.85, "confidence": 0.95}]
    )
    metrics = _twelve_of_twelve()
    default = _check(gates.evaluate(point, metrics, [], None), "absolute/accuracy")
    # Default unchanged: the point estimate passes, and the message says what stands behind it.
    assert default.passed and default.confidence is None
    assert default.message == "accuracy=1 >= 0.85 (n=12, 95 % CI 0.7575-1)"
    check = _check(gates.evaluate(bound, metrics, [], None), "absolute/accuracy")
    assert not check.passed
    assert (check.value, check.samples, check.confidence) == (1.0, 12, 0.95)
    assert check.low == pytest.approx(12 / (12 + 1.959963984540054**2))  # 0.7575
    assert check.message == (
        "accuracy=1 (n=12): 95 % Wilson lower bound 0.7575 not >= 0.85 (interval 0.7575-1)"
    )
    # 48 of 48 right has a lower bound of 0.926: the same gate passes on more evidence.
    more = EvaluationMetrics(
        overall={"accuracy": 1.0},
        intervals={"accuracy": MetricInterval.model_validate(wilson_interval(48, 48))},
    )
    assert _check(gates.evaluate(bound, more, [], None), "absolute/accuracy").passed


def test_an_upper_bound_gate_and_another_level_from_the_counts() -> None:
    # 3 errors in 40: error rate 0.075; at 0.99 its Wilson upper bound is 0.2518.
    metrics = EvaluationMetrics(
        overall={"error_rate": 0.075},
        intervals={"error_rate": MetricInterval.model_validate(wilson_interval(3, 40))},
    )
    spec = _spec(
        absolute=[{"metric": "error_rate", "op": "<=", "threshold": 0.2, "confidence": 0.99}]
    )
    check = _check(gates.evaluate(spec, metrics, [], None), "absolute/error_rate")
    assert not check.passed and check.high == pytest.approx(0.25177, abs=1e-5)
    assert "99 % Wilson upper bound 0.2518 not <= 0.2" in check.message


def test_a_bootstrap_interval_is_used_only_at_its_own_level() -> None:
    interval = MetricInterval(samples=200, low=0.81, high=0.88, confidence=0.95, method="bootstrap")
    metrics = EvaluationMetrics(overall={"macro_f1": 0.85}, intervals={"macro_f1": interval})
    at_95 = _spec(
        absolute=[{"metric": "macro_f1", "op": ">=", "threshold": 0.8, "confidence": 0.95}]
    )
    at_99 = _spec(
        absolute=[{"metric": "macro_f1", "op": ">=", "threshold": 0.8, "confidence": 0.99}]
    )
    ok = _check(gates.evaluate(at_95, metrics, [], None), "absolute/macro_f1")
    assert ok.passed and "95 % bootstrap lower bound 0.81 >= 0.8" in ok.message
    refused = _check(gates.evaluate(at_99, metrics, [], None), "absolute/macro_f1")
    assert not refused.passed
    assert "requires its 99 % interval bound" in refused.message
    assert "evaluator's bootstrap one at 95 %" in refused.message
    bare = EvaluationMetrics(overall={"macro_f1": 0.85})
    missing = _check(gates.evaluate(at_95, bare, [], None), "absolute/macro_f1")
    assert not missing.passed and "no interval was reported" in missing.message


def _halves(best: tuple[int, int], worst: tuple[int, int]) -> EvaluationMetrics:
    return EvaluationMetrics(
        overall={"accuracy": 0.85},
        per_slice=[
            SliceMetrics(column="half", value=v, samples=n, metrics={"accuracy": k / n})
            for v, (k, n) in (("a", best), ("b", worst))
        ],
    )


def test_a_fairness_gap_inside_the_noise_fails_a_gate_that_requires_its_bound() -> None:
    # Two random halves of ~150 rows: 135/150 vs 120/150 right, a gap of 0.10.
    metrics = _halves((135, 150), (120, 150))
    point = _check(
        gates.evaluate(_spec(maxFairnessGap=0.12), metrics, [], None), "fairness/accuracy"
    )
    assert point.passed and point.samples == 300
    assert "(135/150 vs 120/150, 95 % CI 0.01895-0.1809) <= 0.12" in point.message
    spec = _spec(maxFairnessGap=0.12, fairnessConfidence=0.95)
    check = _check(gates.evaluate(spec, metrics, [], None), "fairness/accuracy")
    assert not check.passed and check.value == pytest.approx(0.1)
    assert check.high == pytest.approx(0.18087, abs=1e-5)
    assert "95 % Newcombe upper bound 0.1809 (half=a 135/150 vs half=b 120/150" in check.message
    # The same gap on 100 times the rows is well inside the gate.
    big = _halves((13500, 15000), (12000, 15000))
    assert _check(gates.evaluate(spec, big, [], None), "fairness/accuracy").passed


def test_fairness_confidence_needs_a_proportion() -> None:
    with pytest.raises(ValidationError, match="fairnessConfidence: needs fairnessMetric accuracy"):
        Gates.model_validate(
            {"maxFairnessGap": 0.1, "fairnessMetric": "macro_f1", "fairnessConfidence": 0.95}
        )
    with pytest.raises(ValidationError, match=r"less than or equal to 0\.999"):
        Gates.model_validate(
            {"absolute": [{"metric": "accuracy", "op": ">=", "threshold": 0.9, "confidence": 1}]}
        )


def test_the_evaluator_reports_counts_and_intervals() -> None:
    y = np.array([0, 1] * 6)  # 12 rows, every one right
    probs = np.eye(2)[y] * 0.9 + 0.05
    slices = {"site": np.array(["a"] * 6 + ["b"] * 6)}
    result = evaluate(probs, y, ["x", "y"], slices)
    accuracy = result.intervals["accuracy"]
    assert (accuracy["samples"], accuracy["successes"], accuracy["method"]) == (12, 12, "wilson")
    assert accuracy["low"] == pytest.approx(0.7575, abs=1e-4) and accuracy["high"] == 1.0
    f1 = result.intervals["macro_f1"]
    assert f1["method"] == "bootstrap" and f1["samples"] == 12
    assert f1["low"] == f1["high"] == 1.0  # every resample is all right
    assert result.intervals["ece"]["method"] == "bootstrap"
    gap = result.intervals["fairness_gap"]
    assert gap["method"] == "newcombe" and gap["samples"] == 12
    assert gap["detail"] == "site=b vs site=a: 6/6 vs 6/6 correct"
    assert (round(gap["low"], 4), round(gap["high"], 4)) == (-0.3903, 0.3903)
    EvaluationMetrics.model_validate({"intervals": result.intervals})  # the status shape


def test_the_trainingrun_message_names_the_sample_count() -> None:
    from edgeops.controllers.trainingrun import _evaluated_message

    evaluation = {
        "reference": {"format": "onnx"},
        "artifacts": [{}],
        "metrics": {
            "overall": {"accuracy": 1.0},
            "intervals": {"accuracy": wilson_interval(12, 12)},
        },
    }
    message = _evaluated_message({"datasetVersion": "ab" * 32}, evaluation)
    assert "accuracy=1.0000 (n=12, 95 % CI 0.7575-1), 1 artifacts" in message


def _interval(successes: int, samples: int) -> MetricInterval:
    return MetricInterval.model_validate(wilson_interval(successes, samples))


def test_the_int8_gate_states_both_sample_counts_and_intervals() -> None:
    # The trial's case: the int8 model got 34 of 37 test rows right, the float one all 37.
    spec = EdgeModelSpec.model_validate(
        {
            "training": {"datasetRef": {"name": "d"}, "exports": ["onnx", "tflite-int8"]},
            "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
            "gates": {"requireInt8AccuracyWithin": 0.03},
        }
    )
    metrics = EvaluationMetrics(
        overall={"accuracy": 1.0, "tflite_int8_accuracy": 34 / 37},
        intervals={"accuracy": _interval(37, 37), "tflite_int8_accuracy": _interval(34, 37)},
    )
    check = _check(gates.evaluate(spec, metrics, [], None), "int8/accuracy")
    assert not check.passed and check.samples == 37
    assert check.message == (
        "int8 accuracy 0.9189 (n=37, 95 % CI 0.787-0.972) vs float 1 "
        "(n=37, 95 % CI 0.9059-1): drop 0.08108 not <= 0.03"
    )


def test_a_relative_gate_states_both_sample_counts_and_intervals() -> None:
    spec = _spec(relative=[{"metric": "accuracy", "maxDegradation": 0}])
    current = ModelVersion(
        number=1,
        training_run="r",
        created="2026-01-01T00:00:00Z",
        state="Approved",
        metrics=EvaluationMetrics(
            overall={"accuracy": 1.0}, intervals={"accuracy": _interval(37, 37)}
        ),
    )
    check = _check(gates.evaluate(spec, _twelve_of_twelve(), [], current), "relative/accuracy")
    assert check.passed and (check.samples, check.high) == (12, 1.0)
    assert check.source is None
    assert check.message == (
        "accuracy=1 (n=12, 95 % CI 0.7575-1) vs current v1 1 (n=37, 95 % CI 0.9059-1) "
        "(change +0, allowed worsening 0): >= 1"
    )
    first = _check(gates.evaluate(spec, _twelve_of_twelve(), [], None), "relative/accuracy")
    assert (
        first.message == "accuracy=1 (n=12, 95 % CI 0.7575-1): no current version to compare with"
    )


def test_a_relative_gate_with_confidence_bounds_the_change_by_newcombe() -> None:
    # 12/12 after 37/37: the same point estimate, but 12 rows cannot show that it did not
    # get worse by 2 points: the change's 95 % Newcombe interval is -0.2425 .. 0.09406.
    spec = _spec(relative=[{"metric": "accuracy", "maxDegradation": 0.02, "confidence": 0.95}])
    current = ModelVersion(
        number=1,
        training_run="r",
        created="2026-01-01T00:00:00Z",
        state="Approved",
        metrics=EvaluationMetrics(
            overall={"accuracy": 1.0}, intervals={"accuracy": _interval(37, 37)}
        ),
    )
    low, high = newcombe((12, 12), (37, 37), 0.95)
    check = _check(gates.evaluate(spec, _twelve_of_twelve(), [], current), "relative/accuracy")
    assert not check.passed and check.confidence == 0.95
    assert (round(low, 4), round(high, 5)) == (-0.2425, 0.09406)
    assert check.message == (
        "accuracy=1 (12/12) vs current v1 1 (37/37): change +0, 95 % Newcombe interval "
        "-0.2425-0.09406; bound -0.2425 not >= -0.02 (allowed worsening 0.02)"
    )
    # 3000/3000 after 2990/3000: the interval's worst end is within 2 points.
    large = EvaluationMetrics(
        overall={"accuracy": 1.0}, intervals={"accuracy": _interval(3000, 3000)}
    )
    assert current.metrics is not None
    current.metrics.intervals["accuracy"] = _interval(2990, 3000)
    current.metrics.overall["accuracy"] = 2990 / 3000
    assert _check(gates.evaluate(spec, large, [], current), "relative/accuracy").passed
    # Without the counts behind both numbers the gate cannot hold its claim.
    current.metrics.intervals.clear()
    bare = _check(gates.evaluate(spec, large, [], current), "relative/accuracy")
    assert not bare.passed
    assert bare.message.endswith(
        "the gate requires the 95 % interval of the change and a version lacks the test "
        "counts (successes of samples) for it"
    )


def test_relative_confidence_needs_a_proportion() -> None:
    with pytest.raises(ValidationError, match=r"relative\[\].confidence: needs metric accuracy"):
        _spec(relative=[{"metric": "macro_f1", "maxDegradation": 0.02, "confidence": 0.95}])
    _spec(relative=[{"metric": "tflite_int8_accuracy", "maxDegradation": 0, "confidence": 0.9}])
