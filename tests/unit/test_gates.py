"""Gate verdicts: absolute, relative (absolute and relative change), per-target budgets,
fairness and int8 accuracy, each reported with value and threshold."""

from __future__ import annotations

from typing import Any

import pytest

from edgeops.api.common import MIN_SLICE_SAMPLES, ArtifactRef, EvaluationMetrics, SliceMetrics
from edgeops.api.edgemodel import EdgeModelSpec, ModelVersion, Target
from edgeops.policy import gates

SHA = "a" * 64


def _spec(**gate_spec: Any) -> EdgeModelSpec:
    return EdgeModelSpec.model_validate(
        {
            "training": {"datasetRef": {"name": "d"}, "exports": ["onnx", "tflite-int8", "tflm"]},
            "targets": [
                {
                    "name": "pi",
                    "targetType": "linux",
                    "format": "onnx",
                    "maxSizeBytes": 1000,
                    "maxLatencyMs": 5,
                },
                {"name": "mcu", "targetType": "mcu", "format": "tflm", "maxSizeBytes": 500},
            ],
            "gates": gate_spec,
        }
    )


def _artifacts(onnx: int = 900, tflm: int = 400) -> list[ArtifactRef]:
    return [
        ArtifactRef(uri="s3://b/1", size=onnx, sha256=SHA, format="onnx"),
        ArtifactRef(uri="s3://b/2", size=tflm, sha256=SHA, format="tflm"),
    ]


def _metrics(**overall: float) -> EvaluationMetrics:
    base = {
        "accuracy": 0.9,
        "tflite_int8_accuracy": 0.88,
        "onnx_latency_ms": 1.5,
        "tflite_int8_latency_ms": 0.5,
    }
    return EvaluationMetrics(overall={**base, **overall})


def _current(accuracy: float, number: int = 4) -> ModelVersion:
    return ModelVersion(
        number=number,
        training_run="r",
        created="2025-01-01T00:00:00Z",
        state="Approved",
        metrics=EvaluationMetrics(overall={"accuracy": accuracy}),
    )


def _check(verdict: Any, name: str) -> Any:
    return next(c for c in verdict.checks if c.name == name)


def test_all_pass_with_budgets() -> None:
    spec = _spec(absolute=[{"metric": "accuracy", "op": ">=", "threshold": 0.8}])
    verdict = gates.evaluate(spec, _metrics(), _artifacts(), None)
    assert verdict.passed
    assert {c.name for c in verdict.checks} == {
        "absolute/accuracy",
        "size/pi",
        "latency/pi",
        "size/mcu",
    }
    assert gates.summary(verdict).startswith("all 4 gates passed")


def test_absolute_failure_shows_value_and_threshold() -> None:
    spec = _spec(absolute=[{"metric": "accuracy", "op": ">=", "threshold": 0.95}])
    verdict = gates.evaluate(spec, _metrics(), _artifacts(), None)
    check = _check(verdict, "absolute/accuracy")
    assert not verdict.passed and (check.value, check.threshold) == (0.9, 0.95)
    assert "accuracy=0.9 not >= 0.95" in gates.summary(verdict)
    assert gates.summary(verdict).startswith("1 of 4 gates failed")


def test_missing_metric_fails() -> None:
    spec = _spec(absolute=[{"metric": "macro_f1", "op": ">=", "threshold": 0.5}])
    check = _check(gates.evaluate(spec, _metrics(), _artifacts(), None), "absolute/macro_f1")
    assert not check.passed and "not reported" in check.message


def test_relative_absolute_mode_against_current() -> None:
    spec = _spec(relative=[{"metric": "accuracy", "maxDegradation": 0.02}])
    ok = _check(
        gates.evaluate(spec, _metrics(accuracy=0.89), _artifacts(), _current(0.9)),
        "relative/accuracy",
    )
    bad = _check(
        gates.evaluate(spec, _metrics(accuracy=0.87), _artifacts(), _current(0.9)),
        "relative/accuracy",
    )
    assert ok.passed and ok.threshold == 0.9 - 0.02
    assert not bad.passed and "vs current v4 0.9" in bad.message and "-0.03" in bad.message


def test_relative_fraction_mode_and_lower_is_better() -> None:
    spec = _spec(
        relative=[
            {
                "metric": "onnx_latency_ms",
                "maxDegradation": 0.1,
                "mode": "relative",
                "higherIsBetter": False,
            }
        ]
    )
    current = _current(0.9)
    assert current.metrics is not None
    current.metrics.overall["onnx_latency_ms"] = 1.0
    fast = gates.evaluate(spec, _metrics(onnx_latency_ms=1.09), _artifacts(), current)
    slow = gates.evaluate(spec, _metrics(onnx_latency_ms=1.2), _artifacts(), current)
    assert _check(fast, "relative/onnx_latency_ms").passed
    check = _check(slow, "relative/onnx_latency_ms")
    assert not check.passed and check.op == "<=" and abs(check.threshold - 1.1) < 1e-9


def test_relative_without_current_version_passes_and_says_so() -> None:
    spec = _spec(relative=[{"metric": "accuracy", "maxDegradation": 0.0}])
    check = _check(gates.evaluate(spec, _metrics(), _artifacts(), None), "relative/accuracy")
    assert check.passed and "no current version" in check.message


def test_size_and_latency_budgets_per_target() -> None:
    verdict = gates.evaluate(_spec(), _metrics(onnx_latency_ms=7.5), _artifacts(tflm=600), None)
    assert not _check(verdict, "latency/pi").passed
    assert "latency 7.5 ms not <= 5 ms" in _check(verdict, "latency/pi").message
    size = _check(verdict, "size/mcu")
    assert not size.passed and (size.value, size.threshold) == (600, 500)
    assert _check(verdict, "size/pi").passed


def test_missing_artifact_fails_its_size_budget() -> None:
    verdict = gates.evaluate(_spec(), _metrics(), _artifacts()[:1], None)
    assert "no tflm artifact" in _check(verdict, "size/mcu").message


def test_a_target_without_its_artifact_rejects_the_version_even_without_budgets() -> None:
    spec = _spec()
    spec.targets.append(
        Target.model_validate({"name": "npu", "targetType": "linux", "format": "tflite"})
    )
    verdict = gates.evaluate(spec, _metrics(), _artifacts(), None)
    check = _check(verdict, "artifact/npu")
    assert not verdict.passed and not check.passed
    assert "no tflite artifact was produced" in check.message
    assert "spec.training.exports must include tflite" in check.message


def test_fairness_uses_the_largest_gap_of_any_column() -> None:
    metrics = _metrics()
    metrics.per_slice = [
        SliceMetrics(column="site", value="a", samples=10, metrics={"accuracy": 0.95}),
        SliceMetrics(column="site", value="b", samples=10, metrics={"accuracy": 0.80}),
        SliceMetrics(column="hw", value="x", samples=10, metrics={"accuracy": 0.90}),
        SliceMetrics(column="hw", value="y", samples=10, metrics={"accuracy": 0.88}),
    ]
    check = _check(
        gates.evaluate(_spec(maxFairnessGap=0.1), metrics, _artifacts(), None), "fairness/accuracy"
    )
    assert not check.passed and abs(check.value - 0.15) < 1e-9
    assert "site=a vs site=b" in check.message
    loose = gates.evaluate(_spec(maxFairnessGap=0.2), metrics, _artifacts(), None)
    assert _check(loose, "fairness/accuracy").passed


def test_fairness_ignores_slices_too_small_to_judge_and_compares_any_metric() -> None:
    metrics = _metrics()
    metrics.per_slice = [
        SliceMetrics(
            column="site", value="a", samples=40, metrics={"accuracy": 0.9, "macro_f1": 0.9}
        ),
        SliceMetrics(
            column="site", value="b", samples=40, metrics={"accuracy": 0.85, "macro_f1": 0.6}
        ),
        SliceMetrics(
            column="site", value="c", samples=MIN_SLICE_SAMPLES - 1, metrics={"accuracy": 0.0}
        ),
    ]
    accuracy = _check(
        gates.evaluate(_spec(maxFairnessGap=0.1), metrics, _artifacts(), None), "fairness/accuracy"
    )
    assert accuracy.passed and accuracy.value == pytest.approx(0.05), accuracy.message
    f1 = _check(
        gates.evaluate(
            _spec(maxFairnessGap=0.1, fairnessMetric="macro_f1"), metrics, _artifacts(), None
        ),
        "fairness/macro_f1",
    )
    assert not f1.passed and f1.value == pytest.approx(0.3)
    assert "site=a vs site=b" in f1.message


def test_fairness_without_slices_fails_with_a_hint() -> None:
    check = _check(
        gates.evaluate(_spec(maxFairnessGap=0.1), _metrics(), _artifacts(), None),
        "fairness/accuracy",
    )
    assert not check.passed and "sliceColumns" in check.message


def test_int8_accuracy_drop() -> None:
    ok = gates.evaluate(_spec(requireInt8AccuracyWithin=0.05), _metrics(), _artifacts(), None)
    assert _check(ok, "int8/accuracy").passed
    bad = gates.evaluate(_spec(requireInt8AccuracyWithin=0.01), _metrics(), _artifacts(), None)
    check = _check(bad, "int8/accuracy")
    assert not check.passed and "drop 0.02 not <= 0.01" in check.message
