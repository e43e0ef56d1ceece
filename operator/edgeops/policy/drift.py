"""The drift monitor's decision: fleet counts from Prometheus -> ``status.drift`` and the
``DataDrift`` / ``ConceptDrift`` conditions, as a pure function of (policy, reference
profile, counts, test accuracy, previous measurement, clock).

Data drift (:func:`measure`): :func:`edgeops.drift.assess_features` on the version's
reference profile (``profile["features"]``) and the live counts per feature and ``bin``
label (the gateway's ``edgeops_device_feature_observations_total`` summed over ``window``):
a calibrated per-feature threshold at level ``alpha / m`` (Bonferroni over the m features)
plus ``minEffect``, or the user's fixed PSI/JS threshold. Concept drift: accuracy on the
labelled feedback (``edgeops_device_feedback_total{outcome}``) against the version's test
accuracy; Drift when the drop exceeds ``accuracyDropThreshold`` *and* a one-sided test of
"accuracy >= test accuracy - accuracyDropThreshold" rejects at ``alpha`` (normal
approximation to the binomial), so a handful of wrong answers cannot alarm.

The no-drift distributions behind the calibrated thresholds come from ``nulls``
(:data:`edgeops.drift.NullSource`); when some are not ready and nothing drifted yet, the
measurement is ``calibrating``: DataDrift says ``Calibrating`` with the statistics so far
(or a standing drift stays True), no Event, and the caller keeps the previous
``status.drift`` and measures again once the simulation is done.

Verdicts are Drift, NoDrift, Inconclusive (too few samples, nothing in the window, a NaN
count) and Error (Prometheus unreachable, profile unreadable). Inconclusive and Error are
neither drift nor no drift: they never start a run (:mod:`edgeops.policy.retrain` acts on
Drift only) and they never clear a standing drift (``driftSince`` and a True condition
stay until a NoDrift measurement of the same version).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from edgeops.api.common import format_time
from edgeops.api.conditions import Verdict
from edgeops.api.constants import ConditionType, Reason
from edgeops.api.edgemodel import DriftSummary, DriftTrigger, DriftVerdict, FeatureDrift
from edgeops.drift import FleetVerdict, NullKey, NullSource, assess_features

from .cron import parse_duration

#: Features kept in status (the API's bound); the worst ones first.
MAX_FEATURES: Final = 256
_MAX_REASON: Final = 1000


@dataclass(frozen=True)
class FleetCounts:
    """What one measurement read from Prometheus for one model version over the window.

    ``features``: feature -> ``bin`` label -> count (``increase`` values: fractional,
    possibly NaN); ``feedback``: ``outcome`` (correct, incorrect) -> count; ``error``: why
    there is no answer (then the counts are empty and the verdicts are Error)."""

    features: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    feedback: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Measurement:
    """One measurement's outcome: the new ``status.drift``, the two conditions
    (type -> (status, reason, message)) and the Events to emit for verdicts that changed
    (``(warning, reason, message)``); ``null_keys``: the no-drift distributions it used or
    awaits; ``calibrating``: how many features await theirs while nothing drifted (then
    ``summary`` is not to be written: see the module docstring)."""

    summary: DriftSummary
    conditions: dict[str, Verdict]
    events: list[tuple[bool, str, str]]
    null_keys: tuple[NullKey, ...] = ()
    calibrating: int = 0


def seconds_until_due(
    trigger: DriftTrigger, previous: DriftSummary | None, version: int, now: datetime
) -> float:
    """Seconds until the next measurement of ``version`` is due: 0 when never measured,
    measured for another version, or ``interval`` has passed since ``measuredAt``. A
    summary written by hand (no ``version``) also stands for ``interval``."""
    if previous is None or not previous.measured_at:
        return 0.0
    if previous.version is not None and previous.version != version:
        return 0.0
    due = datetime.fromisoformat(previous.measured_at) + parse_duration(trigger.interval)
    return max((due - now).total_seconds(), 0.0)


def window_seconds(trigger: DriftTrigger) -> int:
    """``window`` in whole seconds (the PromQL range; at least 1)."""
    return max(1, math.ceil(parse_duration(trigger.window) / timedelta(seconds=1)))


def measure(
    trigger: DriftTrigger,
    version: int,
    profile: Mapping[str, Any] | None,
    counts: FleetCounts,
    test_accuracy: float | None,
    previous: DriftSummary | None,
    now: datetime,
    *,
    profile_error: str | None = None,
    nulls: NullSource | None = None,
) -> Measurement:
    """The measurement of ``version`` at ``now`` (rule in the module docstring).

    ``profile``: the version's reference profile document (None with ``profile_error``
    when it could not be read: Error); ``previous``: the last ``status.drift`` (its standing
    drift carries over Inconclusive and Error for the same version); ``nulls``: where the
    no-drift distributions come from (default: simulated in the caller). Never raises for
    bad data: an unreadable profile entry is Error."""
    prior = previous if previous is not None and previous.version == version else None
    stamp = format_time(now)
    data = _data(trigger, profile, counts, profile_error, nulls)
    concept = _concept(trigger, counts, test_accuracy)
    drift_since = _since(data.verdict, prior.drift_since if prior else None, stamp)
    concept_since = _since(concept.verdict, prior.concept_drift_since if prior else None, stamp)
    features = sorted(data.features, key=lambda f: (f.verdict != "Drift", f.p_value or 1.0))
    stats = {f.feature: f.statistic for f in features if f.statistic is not None}
    summary = DriftSummary(
        psi=max(stats.values()) if stats and trigger.method == "psi" else None,
        js=min(1.0, max(stats.values())) if stats and trigger.method == "js" else None,
        accuracy=concept.accuracy,
        per_feature_psi=dict(stats) if trigger.method == "psi" else {},
        samples=max((f.samples for f in features), default=0),
        window=trigger.window,
        measured_at=stamp,
        version=version,
        verdict=data.verdict,
        reason=data.reason[:_MAX_REASON],
        worst_feature=data.worst,
        alpha=trigger.alpha,
        features=features[:MAX_FEATURES],
        drift_since=drift_since,
        concept_verdict=concept.verdict,
        concept_reason=concept.reason[:_MAX_REASON],
        feedback_samples=concept.samples,
        test_accuracy=test_accuracy,
        concept_p_value=concept.p_value,
        concept_drift_since=concept_since,
    )
    conditions = {
        ConditionType.DATA_DRIFT: _condition(
            version, "data", data.verdict, data.reason, drift_since, trigger.window
        ),
        ConditionType.CONCEPT_DRIFT: _condition(
            version, "concept", concept.verdict, concept.reason, concept_since, trigger.window
        ),
    }
    keys = tuple(k for k in data.null_keys if k is not None)
    if data.pending and data.verdict != "Drift":
        standing = prior.drift_since if prior else None
        return Measurement(
            summary,
            {ConditionType.DATA_DRIFT: _calibrating(version, data.reason, standing, trigger)},
            [],
            keys,
            data.pending,
        )
    events: list[tuple[bool, str, str]] = []
    for kind, new, old in (
        ("data", data.verdict, prior.verdict if prior else None),
        ("concept", concept.verdict, prior.concept_verdict if prior else None),
    ):
        if new != old:
            message = conditions[
                ConditionType.DATA_DRIFT if kind == "data" else ConditionType.CONCEPT_DRIFT
            ][2]
            events.append((new == "Drift", _REASONS[new], f"{message} (was {old or 'unmeasured'})"))
    return Measurement(summary, conditions, events, keys)


# --- data drift ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Data:
    verdict: DriftVerdict
    reason: str
    features: list[FeatureDrift] = field(default_factory=list)
    worst: str | None = None
    null_keys: tuple[NullKey | None, ...] = ()
    pending: int = 0


def _data(
    trigger: DriftTrigger,
    profile: Mapping[str, Any] | None,
    counts: FleetCounts,
    profile_error: str | None,
    nulls: NullSource | None = None,
) -> _Data:
    if profile_error is not None or profile is None:
        return _Data("Error", f"ProfileUnavailable: {profile_error or 'no reference profile'}")
    if counts.error is not None:
        return _Data("Error", f"PrometheusError: {counts.error}")
    reference = profile.get("features")
    if not isinstance(reference, Mapping) or not reference:
        return _Data("Error", "InvalidReferenceProfile: the profile has no features")
    thresholds = None
    if trigger.thresholds == "Fixed":
        fixed = trigger.psi_threshold if trigger.method == "psi" else trigger.js_threshold
        thresholds = dict.fromkeys(reference, fixed)
    try:
        fleet = assess_features(
            reference,
            counts.features,
            method=trigger.method,
            alpha=trigger.alpha,
            min_samples=trigger.min_samples,
            min_effect=trigger.min_effect,
            thresholds=thresholds,
            nulls=nulls,
        )
    except (ValueError, KeyError, TypeError) as error:
        return _Data("Error", f"InvalidReferenceProfile: {type(error).__name__}: {error}")
    return _Data(
        fleet.verdict,
        _data_reason(fleet),
        _features(fleet),
        fleet.worst,
        tuple(v.null_key for v in fleet.features),
        sum(v.pending for v in fleet.features),
    )


def _features(fleet: FleetVerdict) -> list[FeatureDrift]:
    return [
        FeatureDrift(
            feature=v.feature[:128],
            method=v.method,
            verdict=v.verdict,
            statistic=_finite(v.statistic),
            threshold=_finite(v.threshold),
            p_value=v.p_value,
            samples=v.samples,
            reason=v.reason[:512],
        )
        for v in fleet.features
    ]


def _data_reason(fleet: FleetVerdict) -> str:
    """The fleet verdict in words: the worst feature's statistic vs threshold, p-value
    and samples first (what a person reads in ``kubectl describe``)."""
    worst = next((v for v in fleet.features if v.feature == fleet.worst), None)
    if worst is None or worst.statistic is None:
        return fleet.reason
    threshold = "n/a" if worst.threshold is None else f"{worst.threshold:.4g}"
    p = "n/a" if worst.p_value is None else f"{worst.p_value:.2g}"
    numbers = (
        f"{worst.feature}: {worst.method} {worst.statistic:.4g} vs threshold {threshold}, "
        f"p {p}, samples {worst.samples}"
    )
    return f"{numbers}; {fleet.reason}"


# --- concept drift -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Concept:
    verdict: DriftVerdict
    reason: str
    accuracy: float | None = None
    samples: int | None = None
    p_value: float | None = None


def _concept(trigger: DriftTrigger, counts: FleetCounts, test_accuracy: float | None) -> _Concept:
    if counts.error is not None:
        return _Concept("Error", f"PrometheusError: {counts.error}")
    correct = counts.feedback.get("correct", 0.0)
    incorrect = counts.feedback.get("incorrect", 0.0)
    if not all(math.isfinite(x) and x >= 0 for x in (correct, incorrect)):
        return _Concept("Inconclusive", f"NaNCount: feedback {correct} correct, {incorrect} wrong")
    n = correct + incorrect
    samples = round(n)
    if samples == 0:
        return _Concept("Inconclusive", "NoSamples: no labelled feedback in the window", None, 0)
    accuracy = min(1.0, correct / n)
    if test_accuracy is None:
        return _Concept(
            "Inconclusive",
            f"NoTestAccuracy: feedback accuracy {accuracy:.3f} on {samples} labels, but the "
            "version has no test accuracy to compare with",
            accuracy,
            samples,
        )
    if samples < trigger.min_samples:
        return _Concept(
            "Inconclusive",
            f"TooFewSamples: {samples} labelled < minSamples {trigger.min_samples} "
            f"(accuracy {accuracy:.3f} vs test {test_accuracy:.3f})",
            accuracy,
            samples,
        )
    bound = max(0.0, test_accuracy - trigger.accuracy_drop_threshold)
    p_value = _p_below(accuracy, bound, n)
    drop = test_accuracy - accuracy
    drift = drop > trigger.accuracy_drop_threshold and p_value <= trigger.alpha
    sign = ">" if drop > trigger.accuracy_drop_threshold else "<="
    reason = (
        f"feedback accuracy {accuracy:.3f} on {samples} labels vs test {test_accuracy:.3f}: "
        f"drop {drop:.3f} {sign} {trigger.accuracy_drop_threshold:g}, p {p_value:.2g} "
        f"{'<=' if p_value <= trigger.alpha else '>'} alpha {trigger.alpha:g}"
    )
    return _Concept("Drift" if drift else "NoDrift", reason, accuracy, samples, p_value)


def _p_below(accuracy: float, bound: float, n: float) -> float:
    """One-sided p-value of accuracy ``accuracy`` on ``n`` labels under H0 "the true
    accuracy is at least ``bound``" (normal approximation; 1.0 when ``bound`` is 0 or 1)."""
    if bound <= 0.0 or bound >= 1.0:
        return 1.0 if accuracy >= bound else 0.0
    z = (accuracy - bound) / math.sqrt(bound * (1 - bound) / n)
    return min(1.0, max(0.0, 0.5 * math.erfc(-z / math.sqrt(2))))


# --- conditions ---------------------------------------------------------------------------

_REASONS: Final[dict[str, str]] = {
    "Drift": Reason.DRIFT_DETECTED,
    "NoDrift": Reason.NO_DRIFT,
    "Inconclusive": Reason.INSUFFICIENT_DATA,
    "Error": Reason.DRIFT_MEASUREMENT_FAILED,
}


def _since(verdict: DriftVerdict, standing: str | None, stamp: str) -> str | None:
    if verdict == "Drift":
        return standing or stamp
    if verdict == "NoDrift":
        return None
    return standing  # Inconclusive and Error neither start nor clear a drift


def _condition(
    version: int,
    kind: str,
    verdict: DriftVerdict,
    reason: str,
    since: str | None,
    window: str,
) -> Verdict:
    head = f"v{version}, window {window}: "
    if verdict == "Drift":
        return Verdict("True", Reason.DRIFT_DETECTED, f"{head}{kind} drift: {reason}"[:_MAX_REASON])
    if verdict == "NoDrift":
        return Verdict("False", Reason.NO_DRIFT, f"{head}no {kind} drift: {reason}"[:_MAX_REASON])
    if since is not None:
        return Verdict(
            "True",
            Reason.DRIFT_DETECTED,
            f"{head}{kind} drift since {since} stands; the latest measurement is "
            f"{verdict}: {reason}"[:_MAX_REASON],
        )
    status_reason = _REASONS[verdict]
    return Verdict("Unknown", status_reason, f"{head}{verdict}: {reason}"[:_MAX_REASON])


def _calibrating(version: int, reason: str, standing: str | None, trigger: DriftTrigger) -> Verdict:
    """DataDrift while thresholds are being simulated: a standing drift stays True (the
    simulation neither starts nor clears one), else Unknown ``Calibrating``."""
    head = f"v{version}, window {trigger.window}: "
    if standing is not None:
        return Verdict(
            "True",
            Reason.DRIFT_DETECTED,
            f"{head}data drift since {standing} stands; {reason}"[:_MAX_REASON],
        )
    return Verdict("Unknown", Reason.CALIBRATING, f"{head}{reason}"[:_MAX_REASON])


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
