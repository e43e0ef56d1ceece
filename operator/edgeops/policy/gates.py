"""Gates a candidate version must pass before it can reach a fleet.

Pure: (spec, candidate metrics and artifacts, current version) -> verdict. Every check is
reported with its value and threshold, passed or not, so status and Events show the
numbers behind a rejection (the MLflow/TFMA style of absolute and relative thresholds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from edgeops.api.common import MIN_SLICE_SAMPLES, ArtifactRef, EvaluationMetrics
from edgeops.api.edgemodel import (
    AbsoluteGate,
    EdgeModelSpec,
    GateCheck,
    Gates,
    GateVerdict,
    ModelVersion,
    RelativeGate,
    Target,
)

#: Artifacts quantised to int8, whose accuracy is compared with the float model.
INT8_FORMATS = ("tflite-int8", "tflm")


def evaluate(
    spec: EdgeModelSpec,
    metrics: EvaluationMetrics,
    artifacts: Sequence[ArtifactRef],
    current: ModelVersion | None,
) -> GateVerdict:
    """All checks of the spec's gates and target budgets for one candidate."""
    gates = spec.gates
    overall = metrics.overall
    checks = [_absolute(g, overall) for g in gates.absolute]
    checks += [_relative(g, overall, current) for g in gates.relative]
    for target in spec.targets:
        checks += _failed_export(
            _target_budgets(target, overall, artifacts), target.format, metrics
        )
    if gates.max_fairness_gap is not None:
        checks.append(_fairness(gates, metrics))
    if gates.require_int8_accuracy_within is not None:
        int8 = _int8(gates.require_int8_accuracy_within, overall, spec)
        checks += _failed_export([int8], "tflite-int8", metrics)
    return GateVerdict(passed=all(c.passed for c in checks), checks=checks)


def summary(verdict: GateVerdict) -> str:
    """One line for a condition message or Event: failed checks first, with numbers."""
    failed = [c.message for c in verdict.checks if not c.passed]
    if failed:
        return f"{len(failed)} of {len(verdict.checks)} gates failed: " + "; ".join(failed)
    passed = "; ".join(c.message for c in verdict.checks)
    return f"all {len(verdict.checks)} gates passed" + (f": {passed}" if passed else "")


def _failed_export(
    checks: list[GateCheck], fmt: str, metrics: EvaluationMetrics
) -> list[GateCheck]:
    """``checks`` with the reason the ``fmt`` export failed (conversion or its run on the
    test split, ``metrics.export_errors``) in the message of every failed check."""
    reason = metrics.export_errors.get(fmt)
    if reason is None:
        return checks
    return [
        c
        if c.passed
        # Bounded like GateCheck.message (1024): the status write must not fail on it.
        else c.model_copy(
            update={"message": f"{c.message}: the {fmt} export failed: {reason}"[:1024]}
        )
        for c in checks
    ]


def _compare(value: float, op: str, threshold: float) -> bool:
    return value >= threshold if op == ">=" else value <= threshold


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _missing(name: str, metric: str, threshold: float | None, op: str | None) -> GateCheck:
    return GateCheck(
        name=name,
        metric=metric,
        threshold=threshold,
        op=op,
        passed=False,
        message=f"{name}: metric {metric} was not reported by the trainer",
    )


def _number(overall: dict[str, float], metric: str) -> float | None:
    value = overall.get(metric)
    return None if value is None or math.isnan(value) else float(value)


def _absolute(gate: AbsoluteGate, overall: dict[str, float]) -> GateCheck:
    name = f"absolute/{gate.metric}"
    value = _number(overall, gate.metric)
    if value is None:
        return _missing(name, gate.metric, gate.threshold, gate.op)
    passed = _compare(value, gate.op, gate.threshold)
    return GateCheck(
        name=name,
        metric=gate.metric,
        value=value,
        threshold=gate.threshold,
        op=gate.op,
        passed=passed,
        message=f"{gate.metric}={_fmt(value)} {'' if passed else 'not '}{gate.op} "
        f"{_fmt(gate.threshold)}",
    )


def _relative(
    gate: RelativeGate, overall: dict[str, float], current: ModelVersion | None
) -> GateCheck:
    name = f"relative/{gate.metric}"
    op = ">=" if gate.higher_is_better else "<="
    value = _number(overall, gate.metric)
    baseline = None
    if current is not None and current.metrics is not None:
        baseline = _number(current.metrics.overall, gate.metric)
    if value is None:
        return _missing(name, gate.metric, None, op)
    if current is None or baseline is None:
        # The first version (or one whose predecessor lacks the metric) has nothing to be
        # compared with; absolute gates still apply.
        what = "no current version" if current is None else f"v{current.number} lacks it"
        return GateCheck(
            name=name,
            metric=gate.metric,
            value=value,
            op=op,
            passed=True,
            message=f"{gate.metric}={_fmt(value)}: {what} to compare with",
        )
    allowed = gate.max_degradation * (abs(baseline) if gate.mode == "relative" else 1.0)
    threshold = baseline - allowed if gate.higher_is_better else baseline + allowed
    passed = _compare(value, op, threshold)
    change = value - baseline
    unit = f" ({gate.max_degradation:.0%} of {_fmt(baseline)})" if gate.mode == "relative" else ""
    return GateCheck(
        name=name,
        metric=gate.metric,
        value=value,
        threshold=threshold,
        op=op,
        passed=passed,
        message=f"{gate.metric}={_fmt(value)} vs current v{current.number} {_fmt(baseline)} "
        f"(change {change:+.4g}, allowed worsening {_fmt(allowed)}{unit}): "
        f"{'' if passed else 'not '}{op} {_fmt(threshold)}",
    )


def _metric_key(fmt: str, suffix: str) -> str:
    return f"{fmt.replace('-', '_')}_{suffix}"


def _target_budgets(
    target: Target, overall: dict[str, float], artifacts: Sequence[ArtifactRef]
) -> list[GateCheck]:
    checks: list[GateCheck] = []
    artifact = next((a for a in artifacts if a.format == target.format), None)
    if artifact is None:
        # Nothing to sign for this target (e.g. it was added while the run trained): the
        # version is rejected rather than left unregistrable.
        budget = target.max_size_bytes is not None
        name = f"{'size' if budget else 'artifact'}/{target.name}"
        return [
            GateCheck(
                name=name,
                metric=_metric_key(target.format, "size_bytes"),
                threshold=target.max_size_bytes,
                op="<=" if budget else None,
                passed=False,
                message=f"{name}: no {target.format} artifact was produced "
                f"(spec.training.exports must include {target.format})",
            )
        ]
    if target.max_size_bytes is not None:
        name = f"size/{target.name}"
        passed = artifact.size <= target.max_size_bytes
        checks.append(
            GateCheck(
                name=name,
                metric=_metric_key(target.format, "size_bytes"),
                value=artifact.size,
                threshold=target.max_size_bytes,
                op="<=",
                passed=passed,
                message=f"{target.name} {target.format} size {artifact.size} B "
                f"{'' if passed else 'not '}<= {target.max_size_bytes} B",
            )
        )
    if target.max_latency_ms is not None:
        metric = _metric_key(target.format, "latency_ms")
        name = f"latency/{target.name}"
        # tflm runs on the device; its latency is that of the int8 TFLite model it embeds.
        value = _number(overall, metric)
        if value is None and target.format == "tflm":
            value = _number(overall, _metric_key("tflite-int8", "latency_ms"))
        if value is None:
            checks.append(_missing(name, metric, target.max_latency_ms, "<="))
        else:
            passed = value <= target.max_latency_ms
            checks.append(
                GateCheck(
                    name=name,
                    metric=metric,
                    value=value,
                    threshold=target.max_latency_ms,
                    op="<=",
                    passed=passed,
                    message=f"{target.name} {target.format} latency {_fmt(value)} ms "
                    f"{'' if passed else 'not '}<= {_fmt(target.max_latency_ms)} ms",
                )
            )
    return checks


def _fairness(gates: Gates, metrics: EvaluationMetrics) -> GateCheck:
    assert gates.max_fairness_gap is not None
    metric = gates.fairness_metric
    name = f"fairness/{metric}"
    by_column: dict[str, list[tuple[float, str]]] = {}
    for piece in metrics.per_slice:
        value = piece.metrics.get(metric)
        if value is not None and piece.samples >= MIN_SLICE_SAMPLES:
            by_column.setdefault(piece.column, []).append((value, piece.value))
    gaps = [
        (max(values)[0] - min(values)[0], column, max(values)[1], min(values)[1])
        for column, values in by_column.items()
        if len(values) >= 2
    ]
    if not gaps:
        return GateCheck(
            name=name,
            metric=metric,
            threshold=gates.max_fairness_gap,
            op="<=",
            passed=False,
            message=f"{name}: no slice column has two or more slices with {metric} and at "
            f"least {MIN_SLICE_SAMPLES} test samples (set evaluation.sliceColumns or the "
            "Dataset's schema.sliceColumns)",
        )
    gap, column, best, worst = max(gaps)
    passed = gap <= gates.max_fairness_gap
    return GateCheck(
        name=name,
        metric=metric,
        value=gap,
        threshold=gates.max_fairness_gap,
        op="<=",
        passed=passed,
        message=f"largest {metric} gap {_fmt(gap)} ({column}={best} vs {column}={worst}) "
        f"{'' if passed else 'not '}<= {_fmt(gates.max_fairness_gap)}",
    )


def _int8(within: float, overall: dict[str, float], spec: EdgeModelSpec) -> GateCheck:
    name = "int8/accuracy"
    float_acc = _number(overall, "accuracy")
    int8_acc = _number(overall, _metric_key("tflite-int8", "accuracy"))
    if float_acc is None or int8_acc is None:
        missing = "accuracy" if float_acc is None else "tflite_int8_accuracy"
        hint = "" if "tflite-int8" in spec.training.exports else " (export tflite-int8)"
        check = _missing(name, missing, within, "<=")
        return check.model_copy(update={"message": check.message + hint})
    drop = float_acc - int8_acc
    passed = drop <= within
    return GateCheck(
        name=name,
        metric="tflite_int8_accuracy",
        value=drop,
        threshold=within,
        op="<=",
        passed=passed,
        message=f"int8 accuracy {_fmt(int8_acc)} vs float {_fmt(float_acc)}: drop {_fmt(drop)} "
        f"{'' if passed else 'not '}<= {_fmt(within)}",
    )
