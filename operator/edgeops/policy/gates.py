"""Gates a candidate version must pass before it can reach a fleet.

Pure: (spec, candidate metrics and artifacts, current version) -> verdict. Every check is
reported with its value and threshold, passed or not, so status and Events show the
numbers behind a rejection (the MLflow/TFMA style of absolute and relative thresholds).

What stands behind a number is part of it: a metric's check carries its test sample count
and confidence interval (``metrics.intervals``), and a gate with ``confidence`` compares
the interval's bound, not the point estimate. A latency budget is checked against an
estimate for the target's hardware (:mod:`edgeops.policy.hardware`) when there is a
profile; a timing on the evaluator's host is labelled ``host`` and never gates an MCU.
A relative gate on ``<format>_latency_ms`` follows the same rule: for a target of that
format with a hardware profile it compares the two versions' estimates (host timings on a
shared evaluator differ by noise between runs), for an MCU target without one it refuses
to decide on host timings, and otherwise compares host timings, labelled ``source: host``.
The int8 and relative gates state the sample counts and intervals of both numbers they
compare.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from edgeops.api.common import MIN_SLICE_SAMPLES, ArtifactRef, EvaluationMetrics, MetricInterval
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
from edgeops.policy import hardware
from edgeops.policy.intervals import newcombe, wilson

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
    checks = [_absolute(g, metrics) for g in gates.absolute]
    checks += [_relative(g, spec, metrics, current) for g in gates.relative]
    for target in spec.targets:
        checks += _failed_export(
            _target_budgets(target, overall, artifacts), target.format, metrics
        )
    if gates.max_fairness_gap is not None:
        checks.append(_fairness(gates, metrics))
    if gates.require_int8_accuracy_within is not None:
        int8 = _int8(gates.require_int8_accuracy_within, metrics, spec)
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


def _pct(confidence: float) -> str:
    return f"{confidence * 100:.4g} %"


def _interval_at(
    known: MetricInterval | None, confidence: float
) -> tuple[float, float, str] | None:
    """``(low, high, method)`` of a metric at ``confidence``: a proportion's Wilson interval
    is recomputed from its counts at any level; another interval only at its own level."""
    if known is None:
        return None
    if known.method == "wilson" and known.successes is not None:
        low, high = wilson(known.successes, known.samples, confidence)
        return low, high, "Wilson"
    if math.isclose(known.confidence, confidence):
        return known.low, known.high, known.method
    return None


def _stated(interval: MetricInterval | None) -> str:
    """`` (n=12, 95 % CI 0.7575-1)`` for a message, or nothing."""
    if interval is None:
        return ""
    return (
        f" (n={interval.samples}, {_pct(interval.confidence)} CI "
        f"{_fmt(interval.low)}-{_fmt(interval.high)})"
    )


def _absolute(gate: AbsoluteGate, metrics: EvaluationMetrics) -> GateCheck:
    name = f"absolute/{gate.metric}"
    value = _number(metrics.overall, gate.metric)
    if value is None:
        return _missing(name, gate.metric, gate.threshold, gate.op)
    known = metrics.intervals.get(gate.metric)
    check = GateCheck(
        name=name,
        metric=gate.metric,
        value=value,
        threshold=gate.threshold,
        op=gate.op,
        samples=known.samples if known else None,
        low=known.low if known else None,
        high=known.high if known else None,
        passed=False,
    )
    if gate.confidence is None:
        passed = _compare(value, gate.op, gate.threshold)
        return check.model_copy(
            update={
                "passed": passed,
                "message": f"{gate.metric}={_fmt(value)} {'' if passed else 'not '}{gate.op} "
                f"{_fmt(gate.threshold)}{_stated(known)}",
            }
        )
    level = _pct(gate.confidence)
    interval = _interval_at(known, gate.confidence)
    if interval is None or known is None:
        why = (
            "no interval was reported for it"
            if known is None
            else f"its interval is the evaluator's {known.method} one at {_pct(known.confidence)}"
        )
        return check.model_copy(
            update={
                "confidence": gate.confidence,
                "message": f"{gate.metric}={_fmt(value)}: the gate requires its {level} "
                f"interval bound and {why}",
            }
        )
    low, high, method = interval
    bound, side = (low, "lower") if gate.op == ">=" else (high, "upper")
    passed = _compare(bound, gate.op, gate.threshold)
    return check.model_copy(
        update={
            "low": low,
            "high": high,
            "confidence": gate.confidence,
            "passed": passed,
            "message": f"{gate.metric}={_fmt(value)} (n={known.samples}): {level} {method} "
            f"{side} bound {_fmt(bound)} {'' if passed else 'not '}{gate.op} "
            f"{_fmt(gate.threshold)} (interval {_fmt(low)}-{_fmt(high)})",
        }
    )


def _relative(
    gate: RelativeGate,
    spec: EdgeModelSpec,
    metrics: EvaluationMetrics,
    current: ModelVersion | None,
) -> GateCheck:
    """The candidate's ``gate.metric`` against the current version's; a latency of a
    target's format goes to :func:`_relative_latency`."""
    target = _latency_target(spec.targets, gate.metric)
    if target is not None and (
        target.target_type == "mcu" or hardware.profile_for(target.hardware) is not None
    ):
        return _relative_latency(gate, target, metrics.overall, current)
    name = f"relative/{gate.metric}"
    op = ">=" if gate.higher_is_better else "<="
    value = _number(metrics.overall, gate.metric)
    baseline = None
    if current is not None and current.metrics is not None:
        baseline = _number(current.metrics.overall, gate.metric)
    if value is None:
        return _missing(name, gate.metric, None, op)
    known = metrics.intervals.get(gate.metric)
    # A timing is the evaluator host's (no target of that format has a profile): say so.
    host = target is not None or gate.metric.endswith("_latency_ms")
    source = (
        " (source: host, timed on the evaluator's CPU: runs differ by its load; set "
        "targets[].hardware to compare estimates)"
        if host
        else ""
    )
    base = GateCheck(
        name=name,
        metric=gate.metric,
        value=value,
        op=op,
        samples=known.samples if known else None,
        low=known.low if known else None,
        high=known.high if known else None,
        source="host" if host else None,
        passed=True,
    )
    if current is None or baseline is None:
        # The first version (or one whose predecessor lacks the metric) has nothing to be
        # compared with; absolute gates still apply.
        what = "no current version" if current is None else f"v{current.number} lacks it"
        return base.model_copy(
            update={
                "message": f"{gate.metric}={_fmt(value)}{_stated(known)}: {what} to compare "
                f"with{source}"
            }
        )
    assert current.metrics is not None
    was = current.metrics.intervals.get(gate.metric)
    if gate.confidence is not None:
        return _relative_bound(gate, base, (value, known), (baseline, was), current.number)
    threshold, passed, comparison = _against(gate, value, baseline)
    return base.model_copy(
        update={
            "threshold": threshold,
            "passed": passed,
            "message": f"{gate.metric}={_fmt(value)}{_stated(known)} vs current "
            f"v{current.number} {_fmt(baseline)}{_stated(was)} {comparison}{source}",
        }
    )


def _relative_bound(
    gate: RelativeGate,
    check: GateCheck,
    candidate: tuple[float, MetricInterval | None],
    current: tuple[float, MetricInterval | None],
    number: int,
) -> GateCheck:
    """A relative gate with ``confidence``: the worst end of the Newcombe interval of the
    change (candidate minus current, from both test counts) must stay within the allowed
    worsening, as an absolute gate's bound must clear its threshold."""
    assert gate.confidence is not None
    level = _pct(gate.confidence)
    (value, known), (baseline, was) = candidate, current
    allowed = gate.max_degradation * (abs(baseline) if gate.mode == "relative" else 1.0)
    check = check.model_copy(update={"confidence": gate.confidence, "passed": False})
    if known is None or known.successes is None or was is None or was.successes is None:
        return check.model_copy(
            update={
                "message": f"{gate.metric}={_fmt(value)} vs current v{number} "
                f"{_fmt(baseline)}: the gate requires the {level} interval of the change "
                "and a version lacks the test counts (successes of samples) for it",
            }
        )
    low, high = newcombe(
        (known.successes, known.samples), (was.successes, was.samples), gate.confidence
    )
    # Worse is down for higher-is-better: the lower bound is the worst plausible change.
    bound, op, limit = (low, ">=", -allowed) if gate.higher_is_better else (high, "<=", allowed)
    passed = _compare(bound, op, limit)
    return check.model_copy(
        update={
            "threshold": baseline - allowed if gate.higher_is_better else baseline + allowed,
            "passed": passed,
            "message": f"{gate.metric}={_fmt(value)} ({known.successes}/{known.samples}) vs "
            f"current v{number} {_fmt(baseline)} ({was.successes}/{was.samples}): change "
            f"{value - baseline:+.4g}, {level} Newcombe interval {_fmt(low)}-{_fmt(high)}; "
            f"bound {_fmt(bound)} {'' if passed else 'not '}{op} {_fmt(limit)} (allowed "
            f"worsening {_fmt(allowed)})",
        }
    )


def _against(gate: RelativeGate, value: float, baseline: float) -> tuple[float, bool, str]:
    """``(threshold, passed, "(change ..., allowed worsening ...): [not ]op threshold")``
    of ``value`` against the ``baseline`` under ``gate``."""
    op = ">=" if gate.higher_is_better else "<="
    allowed = gate.max_degradation * (abs(baseline) if gate.mode == "relative" else 1.0)
    threshold = baseline - allowed if gate.higher_is_better else baseline + allowed
    passed = _compare(value, op, threshold)
    change = value - baseline
    unit = f" ({gate.max_degradation:.0%} of {_fmt(baseline)})" if gate.mode == "relative" else ""
    return (
        threshold,
        passed,
        f"(change {change:+.4g}, allowed worsening {_fmt(allowed)}{unit}): "
        f"{'' if passed else 'not '}{op} {_fmt(threshold)}",
    )


def _latency_target(targets: Sequence[Target], metric: str) -> Target | None:
    """The target whose artifact ``metric`` (``<format>_latency_ms``) times, preferring one
    with a hardware profile, then an MCU; tflm runs the int8 flatbuffer, so
    ``tflite_int8_latency_ms`` also times a tflm target. None when no target matches."""

    def timed_by(target: Target) -> set[str]:
        formats = {target.format} | ({"tflite-int8"} if target.format == "tflm" else set())
        return {_metric_key(fmt, "latency_ms") for fmt in formats}

    matching = [t for t in targets if metric in timed_by(t)]
    matching.sort(key=lambda t: (hardware.profile_for(t.hardware) is None, t.target_type != "mcu"))
    return matching[0] if matching else None


def _relative_latency(
    gate: RelativeGate, target: Target, overall: dict[str, float], current: ModelVersion | None
) -> GateCheck:
    """A relative latency gate for a ``target`` with a hardware profile (the two versions'
    estimates compared) or an MCU target without one (not decided on host timings)."""
    name = f"relative/{gate.metric}"
    profile = hardware.profile_for(target.hardware)
    op = ">=" if gate.higher_is_better else "<="
    base = GateCheck(name=name, metric=gate.metric, op=op, passed=False)
    counts = _op_counts(target, overall)
    if profile is None or counts is None:
        why = (
            "the evaluation reported no operation counts for the model"
            if profile is not None
            else f"targets[].hardware is not set (profiles: {hardware.known()})"
            if target.hardware is None
            else f"no hardware profile for {target.hardware!r} (known: {hardware.known()})"
        )
        return base.model_copy(
            update={
                "message": f"{name}: cannot estimate the latency on {target.name}: {why}; a "
                "timing on the evaluator's host never gates "
                f"{'an MCU' if target.target_type == 'mcu' else 'other hardware'}",
            }
        )
    value = hardware.estimate_ms(profile, *counts)
    estimate = base.model_copy(update={"value": value, "source": "estimate", "passed": True})
    how = (
        f"(source: estimate for {target.name} on {profile.name} from operation counts: "
        f"{counts[0]:.0f} MACs, {counts[1]:.0f} element ops, {counts[2]:.0f} operators"
    )
    previous = None
    if current is not None and current.metrics is not None:
        previous = _op_counts(target, current.metrics.overall)
    if current is None or previous is None:
        what = (
            "no current version"
            if current is None
            else f"v{current.number} has no operation counts"
        )
        return estimate.model_copy(
            update={"message": f"{gate.metric}={_fmt(value)} ms {how}): {what} to compare with"}
        )
    baseline = hardware.estimate_ms(profile, *previous)
    threshold, passed, comparison = _against(gate, value, baseline)
    return estimate.model_copy(
        update={
            "threshold": threshold,
            "passed": passed,
            "message": f"{gate.metric}={_fmt(value)} ms vs current v{current.number} "
            f"{_fmt(baseline)} ms {comparison} {how}; v{current.number}: "
            f"{previous[0]:.0f} MACs, {previous[1]:.0f} element ops, {previous[2]:.0f} "
            "operators; host timings not compared)",
        }
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
        checks.append(_latency(target, target.max_latency_ms, overall))
    return checks


def _op_counts(target: Target, overall: dict[str, float]) -> tuple[float, float, float] | None:
    """``(macs, elementwise ops, operators)`` of one inference of the target's artifact;
    tflm runs the int8 flatbuffer, so tflite-int8's counts stand in for an older evaluation."""
    formats = [target.format] + (["tflite-int8"] if target.format == "tflm" else [])
    for fmt in formats:
        macs = _number(overall, _metric_key(fmt, "macs"))
        if macs is not None:
            elementwise = _number(overall, _metric_key(fmt, "elementwise_ops")) or 0.0
            return macs, elementwise, _number(overall, _metric_key(fmt, "operators")) or 0.0
    return None


def _latency(target: Target, budget: float, overall: dict[str, float]) -> GateCheck:
    """A target's latency budget against an estimate for its hardware (a profile and the
    model's operation counts) or, for a Linux target without a profile, the host timing,
    labelled as such. An MCU target is never gated by a host timing."""
    name = f"latency/{target.name}"
    metric = _metric_key(target.format, "latency_ms")
    profile = hardware.profile_for(target.hardware)
    counts = _op_counts(target, overall)
    base = GateCheck(name=name, metric=metric, threshold=budget, op="<=", passed=False)
    if profile is not None and counts is not None:
        macs, elementwise, operators = counts
        value = hardware.estimate_ms(profile, macs, elementwise, operators)
        passed = value <= budget
        return base.model_copy(
            update={
                "value": value,
                "passed": passed,
                "source": "estimate",
                "message": f"{target.name} {target.format} latency {_fmt(value)} ms "
                f"{'' if passed else 'not '}<= {_fmt(budget)} ms (source: estimate for "
                f"{profile.name}: {macs:.0f} MACs at {profile.macs_per_second:.3g}/s + "
                f"{elementwise:.0f} element ops at {profile.elementwise_per_second:.3g}/s + "
                f"{operators:.0f} operators x {profile.operator_overhead_us:g} us; "
                f"{profile.source})",
            }
        )
    if target.target_type == "mcu" or profile is not None:
        why = (
            f"no hardware profile for {target.hardware!r} (known: {hardware.known()})"
            if profile is None
            else "the evaluation reported no operation counts for the model"
        )
        if target.hardware is None:
            why = f"targets[].hardware is not set (profiles: {hardware.known()})"
        return base.model_copy(
            update={
                "message": f"{name}: cannot estimate the latency on the device: {why}; a "
                "timing on the evaluator's host never gates "
                f"{'an MCU' if target.target_type == 'mcu' else 'other hardware'}",
            }
        )
    timed = _number(overall, metric)
    if timed is None:
        return _missing(name, metric, budget, "<=")
    passed = timed <= budget
    return base.model_copy(
        update={
            "value": timed,
            "passed": passed,
            "source": "host",
            "message": f"{target.name} {target.format} latency {_fmt(timed)} ms "
            f"{'' if passed else 'not '}<= {_fmt(budget)} ms (source: host, timed on the "
            "evaluator's CPU; set targets[].hardware to estimate for the device)",
        }
    )


@dataclass(frozen=True)
class _Slice:
    column: str
    value: str
    rate: float
    samples: int

    @property
    def successes(self) -> int:
        # The evaluator reports a slice's accuracy as correct / samples.
        return round(self.rate * self.samples)


def _fairness(gates: Gates, metrics: EvaluationMetrics) -> GateCheck:
    assert gates.max_fairness_gap is not None
    metric = gates.fairness_metric
    name = f"fairness/{metric}"
    by_column: dict[str, list[_Slice]] = {}
    for piece in metrics.per_slice:
        value = piece.metrics.get(metric)
        if value is not None and piece.samples >= MIN_SLICE_SAMPLES:
            by_column.setdefault(piece.column, []).append(
                _Slice(piece.column, piece.value, value, piece.samples)
            )
    pairs = [
        (max(slices, key=_rate), min(slices, key=_rate))
        for slices in by_column.values()
        if len(slices) >= 2
    ]
    if not pairs:
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
    best, worst = max(pairs, key=lambda p: (p[0].rate - p[1].rate, p[0].column))
    gap = best.rate - worst.rate
    which = f"{best.column}={best.value} vs {worst.column}={worst.value}"
    base = GateCheck(
        name=name,
        metric=metric,
        value=gap,
        threshold=gates.max_fairness_gap,
        op="<=",
        samples=best.samples + worst.samples,
        passed=False,
    )
    if gates.fairness_confidence is None:
        passed = gap <= gates.max_fairness_gap
        counts = ""
        if metric == "accuracy":
            low, high = newcombe((best.successes, best.samples), (worst.successes, worst.samples))
            counts = (
                f" ({best.successes}/{best.samples} vs {worst.successes}/{worst.samples}, "
                f"95 % CI {_fmt(low)}-{_fmt(high)})"
            )
            base = base.model_copy(update={"low": low, "high": high})
        return base.model_copy(
            update={
                "passed": passed,
                "message": f"largest {metric} gap {_fmt(gap)} ({which}){counts} "
                f"{'' if passed else 'not '}<= {_fmt(gates.max_fairness_gap)}",
            }
        )
    # The claim "no two slices differ by more than maxFairnessGap" needs every pair's upper
    # bound below it: a small slice with a smaller gap can have the widest interval.
    confidence = gates.fairness_confidence
    bounds = [
        (newcombe((a.successes, a.samples), (b.successes, b.samples), confidence), a, b)
        for slices in by_column.values()
        for a in slices
        for b in slices
        if a is not b and a.rate >= b.rate
    ]
    (low, high), a, b = max(bounds, key=lambda item: item[0][1])
    passed = high <= gates.max_fairness_gap
    return base.model_copy(
        update={
            "low": low,
            "high": high,
            "confidence": confidence,
            "passed": passed,
            "message": f"largest {metric} gap {_fmt(gap)} ({which}); widest {_pct(confidence)} "
            f"Newcombe upper bound {_fmt(high)} ({a.column}={a.value} {a.successes}/{a.samples}"
            f" vs {b.column}={b.value} {b.successes}/{b.samples}, gap "
            f"{_fmt(a.rate - b.rate)}, interval {_fmt(low)}-{_fmt(high)}) "
            f"{'' if passed else 'not '}<= {_fmt(gates.max_fairness_gap)}",
        }
    )


def _rate(piece: _Slice) -> tuple[float, str]:
    return piece.rate, piece.value


def _int8(within: float, metrics: EvaluationMetrics, spec: EdgeModelSpec) -> GateCheck:
    name = "int8/accuracy"
    overall = metrics.overall
    int8_key = _metric_key("tflite-int8", "accuracy")
    float_acc = _number(overall, "accuracy")
    int8_acc = _number(overall, int8_key)
    if float_acc is None or int8_acc is None:
        missing = "accuracy" if float_acc is None else int8_key
        hint = "" if "tflite-int8" in spec.training.exports else " (export tflite-int8)"
        check = _missing(name, missing, within, "<=")
        return check.model_copy(update={"message": check.message + hint})
    drop = float_acc - int8_acc
    passed = drop <= within
    int8_interval = metrics.intervals.get(int8_key)
    float_interval = metrics.intervals.get("accuracy")
    return GateCheck(
        name=name,
        metric=int8_key,
        value=drop,
        threshold=within,
        op="<=",
        samples=int8_interval.samples if int8_interval else None,
        passed=passed,
        message=f"int8 accuracy {_fmt(int8_acc)}{_stated(int8_interval)} vs float "
        f"{_fmt(float_acc)}{_stated(float_interval)}: drop {_fmt(drop)} "
        f"{'' if passed else 'not '}<= {_fmt(within)}",
    )
