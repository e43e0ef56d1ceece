"""FleetRollout decisions as pure functions of (spec, status, devices, clock, measurements).

The FleetRollout controller (:mod:`edgeops.controllers.fleetrollout`) calls, on every pass:

1. :func:`due_metrics`: which analysis metrics to measure now (it runs their PromQL with
   :mod:`edgeops.metrics.prometheus` and hands the :class:`Measurement` results back);
2. :func:`decide`: the next status, the condition verdicts, the Events and when to run
   again.

Which devices a step targets is decided with :mod:`edgeops.policy.desired`, the functions the
gateway answers ``/desired`` with: a device counts for this rollout only when this rollout
*governs* it (:func:`~edgeops.policy.desired.governing_rollout`: the newest rollout of its
model selecting it) and :func:`~edgeops.policy.desired.moved` says the gateway gives it the
version. So controller and gateway never disagree on who was told to update. A step's
``selector`` adds chosen devices (a lab, one device per site) from that step on, whatever
their cohort bucket; a chosen device is told at the start of the first step that chose it.

Device states, for the target version V (:func:`classify`):

- ``updated``: status.version is V, or the agent reported Committed for V;
- ``failed`` / ``rolledBack`` / ``timedOut``: the agent reported Failed / RolledBack /
  TimedOut for V; ``timedOut`` also when no terminal outcome for V came within
  ``spec.deviceTimeout`` of the start of the step that first targeted the device, or of
  the moment it came back from a deleted newer rollout (``status.handedOver``), whichever
  is later (silence becomes a countable outcome, never an update "in progress" forever;
  the time another rollout governed it, and its reports from then, are not this one's);
- ``incompatible``: the EdgeModel has no target for the device's type and hardware;
- ``inProgress`` (a non-terminal phase for V) or ``pending`` (nothing for V yet);
- ``offline`` (a flag, counted besides the above): targeted, not updated or failed, and not
  seen for 3 report intervals (:func:`edgeops.policy.device.staleness_threshold`).

Transitions (:func:`decide`):

- Pending → Progressing at step 0 once the EdgeModel and the version exist; the stable
  version (where moved devices return on rollback) is recorded then (:func:`choose_stable`).
- ``spec.abort`` → Aborted (terminal).
- The failure threshold (counted outcomes over devices with a terminal outcome, per step or
  cumulative, at least ``minDevices``) or a failed analysis metric (more Fail measurements
  than ``failureLimit``) → ``spec.onFailure``: RolledBack, Aborted, or Paused
  (FailureThreshold).
- More consecutive Inconclusive measurements than the limit → Paused (Inconclusive); more
  consecutive Errors than ``errorLimit`` → Paused (AnalysisError). Neither is ever a pass
  or a failure.
- A step that does not reach its success threshold within ``progressDeadlineSeconds`` →
  Paused (StepDeadline); never an abort.
- ``spec.paused`` → Paused (Manual); false again → Progressing. An automatic pause is left
  only by setting ``spec.acknowledgedPause`` to ``status.pauseId`` (idempotent).
- A completed step waits for its pause (duration, or ``spec.approvedStep`` ≥ its index), its
  analysis (every gating metric ``count`` passes) and, after the last step, ``bakeTime``;
  then the next step starts, or the rollout Succeeded.

Analysis runs from the completion of a step with ``analysis: true`` (and through the bake
after the last step when ``spec.analysis`` exists) and keeps running while Paused.

With ``spec.maxUpdatesPerMinute`` a step admits its cohort buckets gradually
(``status.admittedBuckets``, which :func:`edgeops.policy.desired.moved` honours for the
gateway too) at that many of the selected devices per minute; the ramp is frozen while
Paused, and a step completes only once fully admitted.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from edgeops.api.common import LabelSelector, format_time, parse_time
from edgeops.api.conditions import Verdict
from edgeops.api.constants import ConditionType, Reason
from edgeops.api.device import RETRYABLE_REASONS
from edgeops.api.edgemodel import Target
from edgeops.api.fleetrollout import (
    TERMINAL_PHASES,
    AnalysisMetric,
    AnalysisResult,
    DeviceCounts,
    FleetRolloutSpec,
    FleetRolloutStatus,
    MetricState,
    PausedReason,
    RolloutStep,
    StepRecord,
)
from edgeops.api.fleetrollout import Verdict as MeasurementVerdict
from edgeops.policy.cron import parse_duration
from edgeops.policy.desired import (
    BUCKETS,
    RolloutView,
    choose_target,
    cohort_bucket,
    governing_rollout,
    moved,
    selector_matches,
)
from edgeops.policy.device import staleness_threshold

CONDITION_TYPES: Final = (
    ConditionType.READY,
    ConditionType.PROGRESSING,
    ConditionType.SUCCEEDED,
    ConditionType.OVERLAPPING,
)
#: Measurements kept in status.analysisResults (oldest dropped).
HISTORY: Final = 50
#: Device states :func:`classify` returns.
STATES: Final = (
    "updated",
    "failed",
    "rolledBack",
    "timedOut",
    "incompatible",
    "inProgress",
    "pending",
)
_REPORTED: Final[dict[str, str]] = {
    "Failed": "failed",
    "RolledBack": "rolledBack",
    "TimedOut": "timedOut",
}
#: Device state -> the failure outcome name spec.failureThreshold.outcomes uses.
_OUTCOME_OF_STATE: Final[dict[str, str]] = {
    "failed": "Failed",
    "rolledBack": "RolledBack",
    "timedOut": "TimedOut",
}
#: Pause reason -> Progressing/Ready condition reason.
_PAUSE_REASONS: Final[dict[str, str]] = {
    "Manual": Reason.MANUALLY_PAUSED,
    "Inconclusive": Reason.ANALYSIS_INCONCLUSIVE,
    "AnalysisError": Reason.ANALYSIS_ERROR,
    "StepDeadline": Reason.PROGRESS_DEADLINE_EXCEEDED,
    "FailureThreshold": Reason.FAILURE_THRESHOLD_EXCEEDED,
}


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetDevice:
    """The part of a Device a rollout counts with (what the controller's index keeps)."""

    name: str
    labels: Mapping[str, str]
    eligible: bool  # approved and not decommissioned: the gateway serves it
    target_type: str
    hardware: str | None
    version: int | None  # status.version: what it runs
    update_target: int | None  # status.update.targetVersion
    update_phase: str | None  # status.update.phase
    update_time: str | None  # status.update.time (RFC 3339)
    last_seen: str | None
    report_interval_seconds: int
    update_attempt: int = 1  # status.update.attempt
    update_reason: str | None = None  # status.update.reasonCode


def fleet_device(body: Mapping[str, Any]) -> FleetDevice:
    """The :class:`FleetDevice` of a Device object (Kopf body or dict); never raises for a
    well-formed object (missing fields take the CRD defaults)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    raw = status.get("update")
    update: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    return FleetDevice(
        name=str(meta.get("name") or ""),
        labels=dict(meta.get("labels") or {}),
        eligible=spec.get("approval") == "Approved" and not spec.get("decommissioned"),
        target_type=str(spec.get("targetType") or ""),
        hardware=spec.get("hardware"),
        version=_int(status.get("version")),
        update_target=_int(update.get("targetVersion")),
        update_phase=update.get("phase"),
        update_time=update.get("time"),
        last_seen=status.get("lastSeen"),
        report_interval_seconds=int(spec.get("reportIntervalSeconds") or 60),
        update_attempt=_int(update.get("attempt")) or 1,
        update_reason=update.get("reasonCode"),
    )


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class ModelInfo:
    """What the rollout needs of its EdgeModel: whether it exists, its current version, the
    versions a device may be given (registered and signed, not Rejected/Retired) and its
    targets."""

    found: bool
    current_version: int | None = None
    versions: frozenset[int] = frozenset()
    targets: tuple[Target, ...] = ()


@dataclass(frozen=True)
class Measurement:
    """One measurement of one metric (from :mod:`edgeops.metrics.prometheus`): the query as
    run, the value (None when there was none), the canary samples (inferences in the
    interval), the verdict and a message with the numbers."""

    metric: str
    query: str
    value: float | None
    samples: int
    verdict: MeasurementVerdict
    message: str
    time: datetime


@dataclass(frozen=True)
class Announcement:
    """An Event to post: type (Normal/Warning), reason and message."""

    type: str
    reason: str
    message: str


@dataclass
class Tally:
    """Device counts of one rollout at one moment (see the module docstring).

    ``counts`` is the status shape; ``outcomes`` lists (state, outcome time) of every
    targeted device with a failure outcome (for per-step thresholds); ``terminal`` the
    outcome times of all terminal devices (updated ones included); ``next_timeout`` the
    earliest moment a targeted, undecided device times out; ``overlap`` the newer rollouts
    that govern devices this one selects; ``versions`` what the selected devices run."""

    counts: DeviceCounts = field(default_factory=DeviceCounts)
    outcomes: list[tuple[str, datetime | None]] = field(default_factory=list)
    terminal: list[datetime | None] = field(default_factory=list)
    next_timeout: datetime | None = None
    overlap: set[str] = field(default_factory=set)
    versions: Counter[int] = field(default_factory=Counter)
    #: eligible devices this rollout governs (its selector, no newer rollout), any cohort
    selected: int = 0


# --- time helpers -------------------------------------------------------------------------


def seconds(duration: str | None) -> float:
    """A Go duration (``10m``) in seconds; 0 for None."""
    return 0.0 if duration is None else parse_duration(duration).total_seconds()


# --- counting -----------------------------------------------------------------------------


def own_view(
    name: str, uid: str, created: str, spec: FleetRolloutSpec, status: FleetRolloutStatus
) -> RolloutView:
    """This rollout as :mod:`edgeops.policy.desired` sees it (the same fields the gateway's
    :func:`edgeops.policy.desired.rollout_view` reads from the object)."""
    percent = status.current_percent
    if percent is None and status.current_step is not None:
        percent = spec.steps[status.current_step].percent
    current = status.current_step
    chosen = (
        ()
        if current is None
        else tuple(s.selector for s in spec.steps[: current + 1] if s.selector is not None)
    )
    return RolloutView(
        name=name,
        uid=uid,
        created=created,
        model=spec.model_ref.name,
        version=spec.version,
        phase=status.phase,
        percent=int(percent or 0),
        selector=spec.selector,
        stable_version=status.stable_version,
        admitted=status.admitted_buckets,
        chosen=chosen,
        retry_limit=spec.device_retries.limit,
        retry_backoff_seconds=spec.device_retries.backoff_seconds,
    )


def classify(
    device: FleetDevice,
    version: int,
    told_at: datetime | None,
    now: datetime,
    timeout: timedelta,
    targets: Sequence[Target],
    retry_limit: int = 0,
    since: datetime | None = None,
) -> tuple[str, datetime | None]:
    """The device's state for target ``version`` (one of :data:`STATES`) and, for a
    terminal one, when it was reached (the agent's report time; for a silent device the
    moment its timeout expired; None when unknown). A ``Failed`` attempt with a
    :data:`~edgeops.api.device.RETRYABLE_REASONS` reason is not terminal while the device
    has retries left (attempt ≤ ``retry_limit``): the agent tries again, so it counts as
    in progress (and still times out). ``since``: when this rollout began, or when the
    device came (back) under it from another one (:func:`handed_back_at`), whichever is
    later; a report for ``version`` from before then is stale, not this rollout's outcome
    (its status.version still counts)."""
    if device.version == version or (
        device.update_target == version and device.update_phase == "Committed"
    ):
        return "updated", parse_time(device.update_time)
    retrying = (
        device.update_phase == "Failed"
        and device.update_reason in RETRYABLE_REASONS
        and device.update_attempt <= retry_limit
    )
    reported_at = parse_time(device.update_time)
    stale = since is not None and (reported_at is None or reported_at < since)
    if (
        device.update_target == version
        and device.update_phase in _REPORTED
        and not retrying
        and not stale
    ):
        return _REPORTED[device.update_phase], reported_at
    if targets and choose_target(targets, device.target_type, device.hardware) is None:
        return "incompatible", None
    if told_at is not None and now - told_at > timeout:
        return "timedOut", told_at + timeout
    if device.update_target == version and device.update_phase and not stale:
        return "inProgress", None
    return "pending", None


def handed_back_at(status: FleetRolloutStatus, labels: Mapping[str, str]) -> datetime | None:
    """The last moment a device with ``labels`` came (back) under this rollout from a
    deleted, newer rollout whose selector matched it (``status.handedOver``); None when
    none did. While that rollout existed it governed the device (the newest selecting
    rollout governs), so neither its time nor its reports belong to this rollout."""
    latest: datetime | None = None
    for record in status.handed_over:
        at = parse_time(record.at)
        if at is not None and selector_matches(record.selector, labels):
            latest = at if latest is None else max(latest, at)
    return latest


def is_offline(device: FleetDevice, now: datetime, last_seen_write_seconds: float) -> bool:
    """Never seen, or not seen for the device's staleness threshold."""
    seen = parse_time(device.last_seen)
    if seen is None:
        return True
    threshold = staleness_threshold(device.report_interval_seconds, last_seen_write_seconds)
    return (now - seen).total_seconds() > threshold


@dataclass(frozen=True, slots=True)
class StepStart:
    """A started step as counting sees it: its percent, start and step selector."""

    percent: int
    started: datetime | None
    selector: LabelSelector | None = None


def _told_at(
    bucket: int,
    starts: Sequence[StepStart],
    fallback: datetime | None,
    ramp: tuple[int, float, datetime] | None = None,
    labels: Mapping[str, str] | None = None,
) -> datetime | None:
    """When the gateway first gave the device the version: the start of the first step
    whose selector chooses the device (``labels``) or whose percent admits ``bucket``; for
    a bucket of the current step's ramp (``ramp`` = (admitted buckets, buckets per minute,
    when last raised)) the moment the ramp reached it, counted back from the last raise (a
    pause before that only makes the estimate later, so a device never times out early)."""
    for index, start in enumerate(starts):
        percent, started, selector = start.percent, start.started, start.selector
        if (
            labels is not None
            and selector is not None
            and (selector.match_labels or selector.match_expressions)
            and selector_matches(selector, labels)
        ):
            return started or fallback
        if bucket < 100 * percent:
            if ramp is not None and index == len(starts) - 1 and started is not None:
                admitted, rate, at = ramp
                if rate > 0:
                    back = timedelta(minutes=max(0, admitted - bucket) / rate)
                    return max(started, at - back)
            return started or fallback
    return fallback


def tally(
    view: RolloutView,
    rollouts: Sequence[RolloutView],
    devices: Iterable[FleetDevice],
    status: FleetRolloutStatus,
    timeout: timedelta,
    model: ModelInfo,
    now: datetime,
    last_seen_write_seconds: float,
    spec_steps: Sequence[RolloutStep] = (),
) -> Tally:
    """Counts the devices ``view`` targets now. ``rollouts`` are the namespace's rollouts
    as the gateway sees them (``view`` replaces this rollout's own entry, so counting uses
    the status being decided); ``spec_steps`` the spec's steps (their selectors date when
    a chosen device was told). Cost: one pass over ``devices``, two hashes per selected
    device; no API calls."""
    others = [r for r in rollouts if r.uid != view.uid] + [view]
    starts = [
        StepStart(
            r.percent,
            parse_time(r.started_at),
            spec_steps[r.step].selector if spec_steps and r.step < len(spec_steps) else None,
        )
        for r in status.steps
    ]
    fallback = parse_time(status.step_started_at)
    began = parse_time(status.steps[0].started_at) if status.steps else None
    ramped_at = parse_time(status.admitted_at)
    ramp = (
        (status.admitted_buckets, status.admission_rate, ramped_at)
        if status.admitted_buckets is not None and status.admission_rate and ramped_at
        else None
    )
    result = Tally()
    counts: dict[str, int] = dict.fromkeys(STATES, 0)
    offline = overlapping = targeted = retrying = 0
    for device in devices:
        if not device.eligible:
            continue
        model_label = device.labels.get("edgeops.dev/model")
        if model_label is not None and model_label != view.model:
            continue
        if not selector_matches(view.selector, device.labels):
            continue
        if device.version is not None:
            result.versions[device.version] += 1
        governing = governing_rollout(device.labels, others, model_label)
        if governing is not None and governing.uid != view.uid:
            overlapping += 1
            result.overlap.add(governing.name)
            continue
        result.selected += 1
        if not moved(view, device.name, device.labels):
            continue
        targeted += 1
        bucket = cohort_bucket(view.uid, device.name)
        told_at = _told_at(bucket, starts, fallback, ramp, device.labels)
        back = handed_back_at(status, device.labels)
        if back is not None and (told_at is None or back > told_at):
            told_at = back  # its timeout runs from when it came back, not from the step
        # Reports from before this rollout began (an earlier rollout's failed attempt of
        # the same version) are not its outcomes: the device is told again (a new rollout
        # is a new update for the agent) and its next report counts.
        since = max((t for t in (back, began) if t is not None), default=None)
        state, when = classify(
            device, view.version, told_at, now, timeout, model.targets, view.retry_limit, since
        )
        counts[state] += 1
        if state == "inProgress" and device.update_phase == "Failed":
            retrying += 1  # classify kept a retryable failure with retries left in progress
        if state in _OUTCOME_OF_STATE:
            result.outcomes.append((state, when))
        if state in _OUTCOME_OF_STATE or state == "updated":
            result.terminal.append(when)
        if state in ("pending", "inProgress"):
            if is_offline(device, now, last_seen_write_seconds):
                offline += 1
            if told_at is not None:
                expiry = told_at + timeout
                if result.next_timeout is None or expiry < result.next_timeout:
                    result.next_timeout = expiry
    result.counts = DeviceCounts(
        targeted=targeted,
        updated=counts["updated"],
        in_progress=counts["inProgress"],
        retrying=retrying,
        pending=counts["pending"],
        failed=counts["failed"],
        rolled_back=counts["rolledBack"],
        timed_out=counts["timedOut"],
        incompatible=counts["incompatible"],
        offline=offline,
        overlapping=overlapping,
    )
    return result


def choose_stable(
    version: int, model_current: int | None, running: Mapping[int, int]
) -> tuple[int | None, str]:
    """The version moved devices return to on rollback, and why: the version most selected
    devices run (ties: the higher), other than the rollout's own — what the fleet really
    runs, which the devices this rollout does not move keep. The EdgeModel's current
    version only when no selected device runs another version (a new fleet), and never the
    rollout's own (promotion makes a version current before its rollout moves the fleet);
    None when nothing else is known. (The current version alone would be wrong where a
    rollout applied by hand moved the fleet without promotion: every device outside the
    new cohort would be sent back to it.)"""
    others = {v: n for v, n in running.items() if v != version}
    if others:
        best = max(others, key=lambda v: (others[v], v))
        return best, f"v{best}, which {others[best]} of the selected devices run"
    if model_current is not None and model_current != version:
        return model_current, f"the EdgeModel's current version v{model_current}"
    return None, "none: no other version is current or running on the selected devices"


# --- failure threshold --------------------------------------------------------------------


@dataclass(frozen=True)
class FailureCheck:
    """Counted failures, devices with a terminal outcome, and whether it is exceeded."""

    failed: int
    terminal: int
    exceeded: bool
    message: str


def failure_check(spec: FleetRolloutSpec, status: FleetRolloutStatus, found: Tally) -> FailureCheck:
    """Evaluates ``spec.failureThreshold`` on a tally: exceeded when the counted outcomes
    are at least ``minDevices``, more than ``percent`` % of the devices with a terminal
    outcome (updated or counted), and more than the failures already acknowledged."""
    rule = spec.failure_threshold
    counted = set(rule.outcomes)
    since = parse_time(status.step_started_at) if rule.scope == "PerStep" else None

    def in_scope(when: datetime | None) -> bool:
        return since is None or (when is not None and when >= since)

    failed = sum(
        1
        for state, when in found.outcomes
        if _OUTCOME_OF_STATE[state] in counted and in_scope(when)
    )
    uncounted = sum(
        1
        for state, when in found.outcomes
        if _OUTCOME_OF_STATE[state] not in counted and in_scope(when)
    )
    terminal = sum(1 for when in found.terminal if in_scope(when)) - uncounted
    share = 100.0 * failed / terminal if terminal else 0.0
    exceeded = (
        failed >= rule.min_devices
        and share > rule.percent
        and failed > status.failures_acknowledged
    )
    scope = "since the step started" if since else "since the rollout started"
    message = (
        f"{failed} of {terminal} devices with a terminal outcome {scope} failed "
        f"({'/'.join(sorted(counted))}): {share:.1f} % against a threshold of {rule.percent:g} % "
        f"and at least {rule.min_devices} device(s)"
    )
    if status.failures_acknowledged:
        message += f" ({status.failures_acknowledged} acknowledged)"
    return FailureCheck(failed, terminal, exceeded, message)


# --- analysis -----------------------------------------------------------------------------


def analysis_running(spec: FleetRolloutSpec, status: FleetRolloutStatus) -> bool:
    """Whether analysis measures now: it started (a completed analysis step, or the bake)
    and the rollout is not finished."""
    return (
        spec.analysis is not None
        and status.analysis_started_at is not None
        and status.phase in ("Progressing", "Paused")
    )


def _state(status: FleetRolloutStatus, name: str) -> MetricState | None:
    return next((m for m in status.metrics if m.name == name), None)


def next_due(
    spec: FleetRolloutSpec, status: FleetRolloutStatus, metric: AnalysisMetric
) -> datetime | None:
    """When ``metric`` should be measured next (None: not while analysis is not running):
    ``initialDelay`` after the analysis started, then every ``spec.analysis.interval``."""
    if not analysis_running(spec, status) or spec.analysis is None:
        return None
    started = parse_time(status.analysis_started_at)
    if started is None:
        return None
    first = started + timedelta(seconds=seconds(metric.initial_delay))
    state = _state(status, metric.name)
    last = parse_time(state.measured_at) if state is not None else None
    if last is None or last < started:
        return first
    return max(first, last + timedelta(seconds=seconds(spec.analysis.interval)))


def due_metrics(
    spec: FleetRolloutSpec, status: FleetRolloutStatus, now: datetime
) -> list[AnalysisMetric]:
    """The analysis metrics to measure at ``now``."""
    if spec.analysis is None:
        return []
    due: list[AnalysisMetric] = []
    for metric in spec.analysis.metrics:
        when = next_due(spec, status, metric)
        if when is not None and when <= now:
            due.append(metric)
    return due


def evaluate_value(
    metric: AnalysisMetric,
    canary: float | None,
    stable: float | None,
    samples: int,
) -> tuple[MeasurementVerdict, float | None, str]:
    """The verdict of one measurement from the canary value (and the stable value for
    ``baseline: VsStable``) and the canary samples: Inconclusive when a value is missing or
    NaN or there are fewer than ``minSamples`` samples; else Pass or Fail by ``op`` and
    ``threshold``. Returns (verdict, compared value, message with the numbers). Error is
    decided by the caller (Prometheus failed, no value to judge)."""
    if samples < metric.min_samples:
        return (
            "Inconclusive",
            canary,
            f"{samples} canary inferences in the interval, fewer than minSamples "
            f"{metric.min_samples}: no verdict"
            + (
                " (none at all: are canary devices reporting, and is spec.analysis.interval "
                "at least twice Prometheus' scrape interval? increase() over a shorter "
                "window sees no change)"
                if samples == 0
                else ""
            ),
        )
    if canary is None or math.isnan(canary):
        return "Inconclusive", None, "the query returned no value (empty or NaN): no verdict"
    value, what = canary, "value"
    if metric.baseline == "VsStable":
        if stable is None or math.isnan(stable):
            return (
                "Inconclusive",
                None,
                f"canary {canary:g}, but the stable cohort's query returned no value: no verdict",
            )
        value, what = canary - stable, f"canary {canary:g} - stable {stable:g} ="
    passed = value >= metric.threshold if metric.op == ">=" else value <= metric.threshold
    verdict: MeasurementVerdict = "Pass" if passed else "Fail"
    sign = metric.op if passed else {">=": "<", "<=": ">"}[metric.op]
    return (
        verdict,
        value,
        f"{what} {value:g} {sign} {metric.threshold:g} with {samples} canary inferences",
    )


def _apply_measurement(
    state: MetricState, measurement: Measurement, metric: AnalysisMetric
) -> MetricState:
    passes, failures = state.passes, state.failures
    inconclusive, errors = state.inconclusive, state.errors
    if measurement.verdict == "Pass":
        passes, inconclusive, errors = passes + 1, 0, 0
    elif measurement.verdict == "Fail":
        failures, inconclusive, errors = failures + 1, 0, 0
    elif measurement.verdict == "Inconclusive":
        inconclusive, errors = inconclusive + 1, 0
    else:
        errors += 1
    return MetricState(
        name=metric.name,
        query=measurement.query[:8192],
        value=measurement.value,
        op=metric.op,
        threshold=metric.threshold,
        samples=measurement.samples,
        verdict=measurement.verdict,
        message=measurement.message[:1024],
        measured_at=format_time(measurement.time),
        dry_run=metric.dry_run,
        passes=passes,
        failures=failures,
        inconclusive=inconclusive,
        errors=errors,
    )


def _fresh_state(metric: AnalysisMetric, old: MetricState | None) -> MetricState:
    """Tallies reset for a new analysis; the last measurement stays on show."""
    if old is None:
        return MetricState(
            name=metric.name, query=metric.query, op=metric.op, threshold=metric.threshold,
            dry_run=metric.dry_run,
        )  # fmt: skip
    return old.model_copy(update={"passes": 0, "failures": 0, "inconclusive": 0, "errors": 0})


# --- the decision -------------------------------------------------------------------------


@dataclass
class Decision:
    """What :func:`decide` returns: the status to write, condition verdicts, Events (in
    order) and the seconds after which to run again (None: on the next change)."""

    status: FleetRolloutStatus
    conditions: dict[str, Verdict]
    events: list[Announcement]
    requeue: float | None


@dataclass
class _Pass:
    """Working state of one decision."""

    spec: FleetRolloutSpec
    status: FleetRolloutStatus
    now: datetime
    events: list[Announcement] = field(default_factory=list)
    wake: list[datetime] = field(default_factory=list)

    @property
    def stamp(self) -> str:
        return format_time(self.now)

    def at(self) -> str:
        step = self.status.current_step or 0
        return f"step {step + 1}/{len(self.spec.steps)} ({self.spec.steps[step].percent} %)"

    def say(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Announcement(type_, reason, message))
        self.status.message = message[:2048]

    def wake_at(self, when: datetime | None) -> None:
        if when is not None:
            self.wake.append(when)


def _counts_text(counts: DeviceCounts) -> str:
    text = (
        f"{counts.updated}/{counts.targeted} updated, {counts.in_progress} in progress"
        + (f" ({counts.retrying} retrying a failed download)" if counts.retrying else "")
        + f", {counts.pending} pending, {counts.failed} failed, {counts.rolled_back} rolled back, "
        f"{counts.timed_out} timed out, {counts.incompatible} incompatible, "
        f"{counts.offline} offline"
    )
    if counts.overlapping:
        text += f", {counts.overlapping} governed by a newer rollout"
    return text


def _finish(work: _Pass, phase: str, type_: str, reason: str, message: str) -> None:
    work.status.phase = phase  # type: ignore[assignment]
    work.status.paused_reason = None
    work.status.pause_id = None
    work.status.finished_at = work.stamp
    work.say(type_, reason, message)


def _pause(work: _Pass, reason: PausedReason, message: str) -> None:
    """Pauses (or re-pauses for another reason). Automatic pauses get a pause id, the value
    spec.acknowledgedPause must carry to leave them."""
    status = work.status
    if status.phase == "Paused" and status.paused_reason == reason:
        return
    status.phase = "Paused"
    status.paused_reason = reason
    step = status.current_step or 0
    status.pause_id = None if reason == "Manual" else f"step{step}-{reason}-{work.stamp}"
    hint = (
        "set spec.paused to false to resume"
        if reason == "Manual"
        else f"to resume, set spec.acknowledgedPause to {status.pause_id!r} "
        f"(edgeops rollout resume)"
    )
    work.say("Warning" if reason != "Manual" else "Normal", _PAUSE_REASONS[reason], f"paused "
             f"({reason}) at {work.at()}: {message}; {hint}")  # fmt: skip


def _on_failure(work: _Pass, reason: str, message: str, stable: str) -> None:
    """Applies spec.onFailure to a failure (devices or analysis)."""
    action = work.spec.on_failure
    if action == "Rollback":
        _finish(
            work, "RolledBack", "Warning", Reason.ROLLED_BACK,
            f"rolled back at {work.at()}: {message}; devices already moved return to {stable}, "
            "devices not yet moved are not touched",
        )  # fmt: skip
    elif action == "Abort":
        _finish(
            work, "Aborted", "Warning", Reason.ABORTED,
            f"aborted at {work.at()} (onFailure Abort): {message}; no further device is told "
            "to update, moved devices keep the version",
        )  # fmt: skip
    else:
        _pause(work, "FailureThreshold", f"{reason}: {message}")


def _start_step(work: _Pass, index: int, selected: int) -> None:
    """Starts step ``index``; with spec.maxUpdatesPerMinute its cohort is admitted
    gradually: the ramp's rate in buckets per minute is the limit's share of the
    ``selected`` devices (so the limit holds whatever the fleet's size)."""
    status, spec = work.status, work.spec
    percent = spec.steps[index].percent
    base = (
        status.admitted_buckets
        if status.admitted_buckets is not None
        else (100 * spec.steps[index - 1].percent if index > 0 else 0)
    )
    ramp = ""
    if spec.max_updates_per_minute and selected > 0 and base < 100 * percent:
        rate = spec.max_updates_per_minute * BUCKETS / selected
        status.admitted_buckets, status.admission_rate = base, rate
        status.admitted_at = work.stamp
        minutes = (100 * percent - base) / rate
        ramp = (
            f", admitted gradually at maxUpdatesPerMinute {spec.max_updates_per_minute} "
            f"(of {selected} selected devices: about {minutes:.1f} min)"
        )
    else:
        status.admitted_buckets = status.admission_rate = status.admitted_at = None
    status.current_step = index
    status.current_percent = percent
    status.step_started_at = work.stamp
    status.step_completed_at = None
    status.analysis_started_at = None
    status.resumed_at = None
    records = [r for r in status.steps if r.step != index]
    records.append(StepRecord(step=index, percent=percent, started_at=work.stamp))
    status.steps = sorted(records, key=lambda r: r.step)
    chosen = spec.steps[index].selector
    extra = (
        f" plus the devices its selector chooses ({_selector_text(chosen)})"
        if chosen is not None
        else ""
    )
    work.say(
        "Normal", Reason.STEP_STARTED,
        f"step {index + 1}/{len(work.spec.steps)} started: {percent} % of the selected "
        f"devices{extra} are told to run v{work.spec.version}{ramp}",
    )  # fmt: skip


def _selector_text(selector: LabelSelector) -> str:
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for req in selector.match_expressions or []:
        values = ",".join(req.values or [])
        parts.append(
            f"{req.key} {req.operator} ({values})" if values else f"{req.key} {req.operator}"
        )
    return ", ".join(parts) or "none"


def _start_analysis(work: _Pass) -> None:
    spec, status = work.spec, work.status
    status.analysis_started_at = work.stamp
    if spec.analysis is not None:
        status.metrics = [_fresh_state(m, _state(status, m.name)) for m in spec.analysis.metrics]


def _record_measurements(work: _Pass, measurements: Sequence[Measurement]) -> None:
    spec, status = work.spec, work.status
    if spec.analysis is None:
        return
    metrics = {m.name: m for m in spec.analysis.metrics}
    step = status.current_step or 0
    for measurement in measurements:
        metric = metrics.get(measurement.metric)
        if metric is None:
            continue
        old = _state(status, metric.name) or _fresh_state(metric, None)
        new = _apply_measurement(old, measurement, metric)
        status.metrics = [m for m in status.metrics if m.name != metric.name] + [new]
        status.analysis_results = [
            *status.analysis_results,
            AnalysisResult(
                step=step,
                metric=metric.name,
                value=measurement.value,
                threshold=metric.threshold,
                samples=measurement.samples,
                verdict=measurement.verdict,
                measured_at=format_time(measurement.time),
                message=measurement.message[:1024],
            ),
        ][-HISTORY:]
        dry = " (dry run)" if metric.dry_run else ""
        reason = {
            "Pass": Reason.ANALYSIS_PASSED,
            "Fail": Reason.ANALYSIS_FAILED,
            "Inconclusive": Reason.ANALYSIS_INCONCLUSIVE,
            "Error": Reason.ANALYSIS_ERROR,
        }[measurement.verdict]
        work.events.append(
            Announcement(
                "Normal" if measurement.verdict == "Pass" or metric.dry_run else "Warning",
                reason,
                f"{metric.name}{dry}: {measurement.verdict} at {work.at()}: {measurement.message}"
                f" (passes {new.passes}/{metric.count}, failures {new.failures}, "
                f"inconclusive {new.inconclusive} in a row, errors {new.errors} in a row)",
            )
        )
    order = list(metrics)
    status.metrics = sorted(
        status.metrics, key=lambda m: order.index(m.name) if m.name in order else len(order)
    )


def _analysis_verdict(work: _Pass) -> tuple[str, str] | None:
    """('Fail'|'Inconclusive'|'Error', message) of the first gating metric beyond a limit."""
    spec, status = work.spec, work.status
    if spec.analysis is None or not analysis_running(spec, status):
        return None
    for metric in spec.analysis.metrics:
        state = _state(status, metric.name)
        if metric.dry_run or state is None:
            continue
        limit = (
            metric.inconclusive_limit
            if metric.inconclusive_limit is not None
            else spec.analysis.inconclusive_limit
        )
        if state.failures > metric.failure_limit:
            return "Fail", (
                f"analysis metric {metric.name} failed {state.failures} time(s), more than "
                f"failureLimit {metric.failure_limit}; last: {state.message}"
            )
        if state.inconclusive > limit:
            return "Inconclusive", (
                f"analysis metric {metric.name} was Inconclusive {state.inconclusive} times in "
                f"a row, more than inconclusiveLimit {limit}; last: {state.message}"
            )
        if state.errors > metric.error_limit:
            return "Error", (
                f"analysis metric {metric.name} could not be measured {state.errors} times in "
                f"a row (Error), more than errorLimit {metric.error_limit}; last: "
                f"{state.message}"
            )
    return None


def _analysis_passed(work: _Pass) -> tuple[bool, str]:
    """Whether every gating metric has ``count`` passes in this analysis; the tallies."""
    spec, status = work.spec, work.status
    if spec.analysis is None:
        return True, ""
    waiting: list[str] = []
    for metric in spec.analysis.metrics:
        if metric.dry_run:
            continue
        state = _state(status, metric.name)
        passes = state.passes if state is not None else 0
        if passes < metric.count:
            waiting.append(f"{metric.name} {passes}/{metric.count} passes")
    return not waiting, ", ".join(waiting)


def _stable_text(status: FleetRolloutStatus, model: ModelInfo) -> str:
    if status.stable_version is not None:
        return f"v{status.stable_version}"
    if model.current_version is not None:
        return f"the EdgeModel's current version v{model.current_version}"
    return "no version (none is known)"


def decide(
    spec: FleetRolloutSpec,
    status: FleetRolloutStatus,
    view: RolloutView,
    rollouts: Sequence[RolloutView],
    devices: Iterable[FleetDevice],
    model: ModelInfo,
    measurements: Sequence[Measurement],
    now: datetime,
    last_seen_write_seconds: float,
) -> Decision:
    """The next status of a rollout (see the module docstring for the rules). ``status`` is
    not mutated; ``view`` is this rollout as :func:`own_view` builds it from ``status``;
    ``rollouts`` the namespace's rollouts; ``devices`` the namespace's devices;
    ``measurements`` the results for :func:`due_metrics`; ``now`` timezone-aware;
    ``last_seen_write_seconds`` the gateway's lastSeen write interval (offline counting).
    Raises ValueError only for a spec the models refused (never for device data)."""
    devices = devices if isinstance(devices, Sequence) else list(devices)  # read twice at start
    work = _Pass(spec, status.model_copy(deep=True), now)
    st = work.status
    if st.phase in TERMINAL_PHASES:
        return _done(work, model, None)
    if st.phase in (None, "Pending"):
        problem = _not_startable(spec, model)
        if problem is not None:
            st.phase = "Pending"
            if st.message != problem[1]:
                work.say("Warning", problem[0], problem[1])
            return _done(work, model, None, pending_reason=problem[0])
    if st.phase in ("Progressing", "Paused"):
        _adopt(work)
    timeout = timedelta(seconds=seconds(spec.device_timeout))
    found = tally(
        view, rollouts, devices, st, timeout, model, now, last_seen_write_seconds, spec.steps
    )
    if st.phase in ("Progressing", "Paused") and st.stable_version is None:
        st.stable_version, _ = choose_stable(spec.version, model.current_version, found.versions)
    if st.phase in (None, "Pending"):
        st.stable_version, why = choose_stable(spec.version, model.current_version, found.versions)
        st.target_version = spec.version
        st.phase = "Progressing"
        work.say(
            "Normal", Reason.ROLLOUT_STARTED,
            f"rolling {spec.model_ref.name} out to v{spec.version} in {len(spec.steps)} step(s); "
            f"stable version (rollback target): {why}",
        )  # fmt: skip
        # Counted as Pending, the devices an older rollout governs now look overlapping;
        # the ramp's rate is a share of the devices this rollout will govern once started.
        starting = dataclasses.replace(view, phase="Progressing", percent=0)
        selected = tally(
            starting, rollouts, devices, st, timeout, model, now, last_seen_write_seconds,
            spec.steps,
        ).selected  # fmt: skip
        _start_step(work, 0, selected)
        return _done(work, model, MIN_REQUEUE_SECONDS)
    st.counts = found.counts
    _record_step_counts(work)
    if spec.abort:
        _finish(
            work, "Aborted", "Warning", Reason.ABORTED,
            f"aborted by spec.abort at {work.at()}: {_counts_text(found.counts)}; no further "
            "device is told to update, moved devices keep the version",
        )  # fmt: skip
        return _done(work, model, None, found=found)
    _pauses(work, found)
    _record_measurements(work, measurements)
    stable = _stable_text(st, model)
    failures = failure_check(spec, st, found)
    if failures.exceeded:
        _on_failure(work, "failure threshold exceeded", failures.message, stable)
        if st.phase in TERMINAL_PHASES:
            return _done(work, model, None, found=found)
    verdict = _analysis_verdict(work)
    if verdict is not None:
        kind, message = verdict
        if kind == "Fail":
            _on_failure(work, "analysis failed", message, stable)
            if st.phase in TERMINAL_PHASES:
                return _done(work, model, None, found=found)
        elif st.paused_reason in (None, "Manual", "StepDeadline"):
            _pause(work, "AnalysisError" if kind == "Error" else "Inconclusive", message)
    if st.phase == "Progressing":
        _progress(work, found)
    if st.phase in TERMINAL_PHASES:
        return _done(work, model, None, found=found)
    _ramp(work)
    work.wake_at(found.next_timeout)
    if spec.analysis is not None:
        for metric in spec.analysis.metrics:
            work.wake_at(next_due(spec, st, metric))
    return _done(work, model, _requeue(work), found=found)


#: Seconds between raises of a ramp at least (each raise is a status write).
RAMP_TICK_SECONDS: Final = 5.0


def _ramping(st: FleetRolloutStatus, percent: int) -> bool:
    return (
        st.admitted_buckets is not None
        and bool(st.admission_rate)
        and st.admitted_buckets < 100 * percent
    )


def _next_raise(st: FleetRolloutStatus) -> datetime | None:
    at = parse_time(st.admitted_at)
    if at is None or not st.admission_rate:
        return None
    return at + timedelta(seconds=max(RAMP_TICK_SECONDS, 60.0 / st.admission_rate))


def _ramp(work: _Pass) -> None:
    """Raises status.admittedBuckets by the rate times the time since the last raise
    (whole buckets; the remainder carries over), up to the step's share. While Paused the
    ramp is frozen: the reference time moves, nothing is admitted."""
    st, now = work.status, work.now
    step = st.current_step or 0
    percent = work.spec.steps[step].percent
    if not _ramping(st, percent) or st.admission_rate is None:
        return
    last = parse_time(st.admitted_at) or now
    if st.phase != "Progressing":
        st.admitted_at = work.stamp
        return
    gained = int(st.admission_rate * (now - last).total_seconds() / 60.0)
    if gained > 0:
        admitted = min(100 * percent, (st.admitted_buckets or 0) + gained)
        spent = timedelta(minutes=(admitted - (st.admitted_buckets or 0)) / st.admission_rate)
        st.admitted_buckets = admitted
        st.admitted_at = format_time(last + spent if admitted < 100 * percent else now)
    work.wake_at(_next_raise(st))


def _adopt(work: _Pass) -> None:
    """Fills what a status written elsewhere (by hand, by a test, by an older operator)
    lacks, so the rules have their reference times: the current step, its start (now) and
    its record."""
    spec, st = work.spec, work.status
    if st.current_step is None or st.current_step >= len(spec.steps):
        st.current_step = 0
    st.current_percent = spec.steps[st.current_step].percent
    st.target_version = spec.version
    if st.step_started_at is None:
        st.step_started_at = work.stamp
    if not any(r.step == st.current_step for r in st.steps):
        record = StepRecord(
            step=st.current_step, percent=st.current_percent, started_at=st.step_started_at
        )
        st.steps = sorted([*st.steps, record], key=lambda r: r.step)


def _not_startable(spec: FleetRolloutSpec, model: ModelInfo) -> tuple[str, str] | None:
    if not model.found:
        return Reason.MODEL_NOT_FOUND, (
            f"EdgeModel {spec.model_ref.name} not found in this namespace; the rollout starts "
            "once it exists"
        )
    if spec.version not in model.versions:
        known = ", ".join(f"v{v}" for v in sorted(model.versions)) or "none"
        return Reason.VERSION_NOT_FOUND, (
            f"EdgeModel {spec.model_ref.name} has no signed, deployable v{spec.version} "
            f"(deployable: {known}); the rollout starts once it is registered"
        )
    return None


def _record_step_counts(work: _Pass) -> None:
    st = work.status
    step = st.current_step or 0
    st.steps = [
        r.model_copy(update={"counts": st.counts}) if r.step == step else r for r in st.steps
    ]


def _pauses(work: _Pass, found: Tally) -> None:
    """Acknowledged automatic pauses end; spec.paused starts and ends a Manual pause."""
    spec, st = work.spec, work.status
    if (
        st.phase == "Paused"
        and st.paused_reason not in (None, "Manual")
        and st.pause_id is not None
        and spec.acknowledged_pause == st.pause_id
    ):
        reason = st.paused_reason
        st.phase, st.paused_reason, st.pause_id = "Progressing", None, None
        st.resumed_at = work.stamp
        if reason == "FailureThreshold":
            # Failures so far are accepted; only new ones trigger onFailure again. A failed
            # analysis metric starts its tallies over.
            st.failures_acknowledged = failure_check(spec, st, found).failed
        if reason in ("FailureThreshold", "Inconclusive", "AnalysisError") and spec.analysis:
            st.metrics = [_fresh_state(m, _state(st, m.name)) for m in spec.analysis.metrics]
        st.handled_acknowledgement = spec.acknowledged_pause
        work.say(
            "Normal", Reason.PAUSE_ACKNOWLEDGED,
            f"pause {spec.acknowledged_pause} ({reason}) acknowledged: resuming at {work.at()}",
        )  # fmt: skip
    elif spec.acknowledged_pause not in (None, st.handled_acknowledgement):
        _ignore_acknowledgement(work)
    if spec.paused and st.phase == "Progressing":
        _pause(work, "Manual", "spec.paused is true")
    elif not spec.paused and st.phase == "Paused" and st.paused_reason == "Manual":
        st.phase, st.paused_reason = "Progressing", None
        work.say("Normal", Reason.RESUMED, f"spec.paused is false: resuming at {work.at()}")


def _waiting_text(work: _Pass, counts: DeviceCounts, share: float, deadline: datetime) -> str:
    """What an incomplete step waits for: how many more devices must run the version, how
    many still can (in progress or pending: after an acknowledged failure pause the failed
    ones count as not updated and may be all that is left), and when the step deadline
    pauses it."""
    spec = work.spec
    step = spec.steps[work.status.current_step or 0]
    # The smallest whole number of devices that reaches the threshold (no float noise).
    needed = max(0, math.ceil(step.success_threshold * counts.targeted / 100 - 1e-9))
    missing = max(0, needed - counts.updated)
    working = counts.in_progress + counts.pending
    text = (
        f"{work.at()}: {share:.1f} % updated of {counts.targeted} targeted, waiting for "
        f"{step.success_threshold:g} %: {missing} more device(s) must run v{spec.version}"
    )
    if missing > working:
        text += (
            f", but only {working} are in progress or pending ({counts.failed} failed, "
            f"{counts.rolled_back} rolled back and {counts.timed_out} timed out count as not "
            "updated until they run it)"
        )
    left = max(0.0, (deadline - work.now).total_seconds())
    return (
        f"{text}; otherwise the step pauses (StepDeadline) at {format_time(deadline)}, in "
        f"{left:.0f} s (progressDeadlineSeconds {spec.progress_deadline_seconds}); "
        f"{_counts_text(counts)}"
    )


def _ignore_acknowledgement(work: _Pass) -> None:
    """A spec.acknowledgedPause that matches no pause (a typo, a stale id, a pause already
    left) resumes nothing; it is said once per value, with the id that would resume."""
    st, value = work.status, work.spec.acknowledged_pause
    st.handled_acknowledgement = value
    if st.phase == "Paused" and st.pause_id is not None:
        now = (
            f"the current pause ({st.paused_reason}) has id {st.pause_id!r}: set "
            "spec.acknowledgedPause to it (edgeops rollout resume) to resume"
        )
    elif st.phase == "Paused":
        now = "the rollout is paused by spec.paused (Manual): set spec.paused to false"
    else:
        now = f"the rollout is {st.phase} at {work.at()} with no automatic pause to leave"
    work.say(
        "Warning", Reason.ACKNOWLEDGEMENT_IGNORED,
        f"spec.acknowledgedPause {value!r} matches no pause and resumes nothing; {now}",
    )  # fmt: skip


def _progress(work: _Pass, found: Tally) -> None:
    """Step completion, deadline, waits after a completed step, next step or success."""
    spec, st, now = work.spec, work.status, work.now
    index = st.current_step or 0
    step = spec.steps[index]
    last = index == len(spec.steps) - 1
    counts = found.counts
    if st.step_completed_at is None and not counts.targeted and counts.overlapping:
        # Every selected device is governed by a newer rollout: completing steps with no
        # device of its own would make this rollout Succeeded, and the day the newer one
        # is deleted, a Succeeded rollout moves every selected device at once.
        st.message = (
            f"{work.at()}: waiting: all {counts.overlapping} selected device(s) are governed "
            f"by the newer rollout(s) {', '.join(sorted(found.overlap))}; no step completes "
            "without a device of this rollout's own"
        )
        return
    if st.step_completed_at is None:
        share = 100.0 * counts.updated / counts.targeted if counts.targeted else 100.0
        if _ramping(st, step.percent):
            work.wake_at(_next_raise(st))
            st.message = (
                f"{work.at()}: admitting devices at maxUpdatesPerMinute "
                f"{spec.max_updates_per_minute}: {st.admitted_buckets}/{100 * step.percent} "
                f"cohort buckets; {_counts_text(counts)}"
            )
            return
        if share >= step.success_threshold:
            st.step_completed_at = work.stamp
            st.steps = [
                r.model_copy(update={"completed_at": work.stamp}) if r.step == index else r
                for r in st.steps
            ]
            work.say(
                "Normal", Reason.STEP_COMPLETED,
                f"{work.at()} complete: {share:.1f} % of {counts.targeted} targeted devices run "
                f"v{spec.version} (successThreshold {step.success_threshold:g} %); "
                f"{_counts_text(counts)}",
            )  # fmt: skip
            if spec.analysis is not None and (step.analysis or (last and spec.bake_time)):
                _start_analysis(work)
        else:
            # The deadline runs from the step's start, a resume, or the end of its ramp.
            started = max(
                t
                for t in (
                    parse_time(st.step_started_at),
                    parse_time(st.resumed_at),
                    parse_time(st.admitted_at),
                    work.now if st.step_started_at is None else None,
                )
                if t is not None
            )
            deadline = started + timedelta(seconds=spec.progress_deadline_seconds)
            if now >= deadline:
                _pause(
                    work, "StepDeadline",
                    f"{share:.1f} % of {counts.targeted} targeted devices updated after "
                    f"{spec.progress_deadline_seconds} s (progressDeadlineSeconds), "
                    f"successThreshold {step.success_threshold:g} %; {_counts_text(counts)}",
                )  # fmt: skip
                return
            work.wake_at(deadline)
            st.message = _waiting_text(work, counts, share, deadline)
            return
    completed = parse_time(st.step_completed_at) or now
    waiting: list[str] = []
    if step.pause is not None and step.pause.duration is not None:
        until = completed + timedelta(seconds=seconds(step.pause.duration))
        if now < until:
            waiting.append(f"pause {step.pause.duration} until {format_time(until)}")
            work.wake_at(until)
    if (
        step.pause is not None
        and step.pause.manual
        and (spec.approved_step is None or spec.approved_step < index)
    ):
        waiting.append(f"manual approval (spec.approvedStep >= {index}; edgeops rollout approve)")
    if step.analysis or (last and spec.bake_time and spec.analysis is not None):
        passed, tallies = _analysis_passed(work)
        if not passed:
            waiting.append(f"analysis: {tallies}")
    if last and spec.bake_time:
        until = completed + timedelta(seconds=seconds(spec.bake_time))
        if now < until:
            waiting.append(f"bakeTime {spec.bake_time} until {format_time(until)}")
            work.wake_at(until)
    if waiting:
        st.message = f"{work.at()} complete; waiting for " + "; ".join(waiting)
        return
    if last:
        _finish(
            work, "Succeeded", "Normal", Reason.COMPLETED,
            f"all {len(spec.steps)} steps complete: v{spec.version} runs on "
            f"{counts.updated} of {counts.targeted} targeted devices; {_counts_text(counts)}",
        )  # fmt: skip
        return
    _start_step(work, index + 1, found.selected)
    work.wake_at(now)  # count the new cohort right away


#: Shortest requeue: a due time in the past (e.g. an analysis interval below a second, or
#: timestamps at second precision) never makes a busy loop.
MIN_REQUEUE_SECONDS: Final = 0.5


def _requeue(work: _Pass) -> float | None:
    if not work.wake:
        return None
    return max(MIN_REQUEUE_SECONDS, (min(work.wake) - work.now).total_seconds())


def _done(
    work: _Pass,
    model: ModelInfo,
    requeue: float | None,
    *,
    found: Tally | None = None,
    pending_reason: str | None = None,
) -> Decision:
    st = work.status
    if st.message is not None:
        st.message = st.message[:2048]  # the CRD's bound: a longer one fails the write
    phase = st.phase or "Pending"
    message = st.message or phase
    overlap = found.overlap if found is not None else set()
    overlapping = found.counts.overlapping if found is not None else 0
    conditions: dict[str, Verdict] = {}
    if phase == "Pending":
        reason = pending_reason or Reason.RECONCILING
        conditions[ConditionType.READY] = Verdict("False", reason, message)
        conditions[ConditionType.PROGRESSING] = Verdict("False", reason, message)
        conditions[ConditionType.SUCCEEDED] = Verdict("Unknown", reason, message)
    elif phase == "Progressing":
        conditions[ConditionType.READY] = Verdict("True", Reason.STEP_PROGRESSING, message)
        conditions[ConditionType.PROGRESSING] = Verdict("True", Reason.STEP_PROGRESSING, message)
        conditions[ConditionType.SUCCEEDED] = Verdict("Unknown", Reason.STEP_PROGRESSING, message)
    elif phase == "Paused":
        reason = _PAUSE_REASONS[st.paused_reason or "Manual"]
        ready = "True" if st.paused_reason == "Manual" else "False"
        conditions[ConditionType.READY] = Verdict(ready, reason, message)
        conditions[ConditionType.PROGRESSING] = Verdict("False", reason, message)
        conditions[ConditionType.SUCCEEDED] = Verdict("Unknown", reason, message)
    else:
        reason = {
            "Succeeded": Reason.COMPLETED,
            "Aborted": Reason.ABORTED,
            "RolledBack": Reason.ROLLED_BACK,
        }[phase]
        ok = "True" if phase == "Succeeded" else "False"
        conditions[ConditionType.READY] = Verdict(ok, reason, message)
        conditions[ConditionType.PROGRESSING] = Verdict("False", reason, message)
        conditions[ConditionType.SUCCEEDED] = Verdict(ok, reason, message)
    if overlapping:
        conditions[ConditionType.OVERLAPPING] = Verdict(
            "True",
            Reason.OVERLAPPING,
            f"{overlapping} selected device(s) are governed by the newer rollout(s) "
            f"{', '.join(sorted(overlap))} and are not counted here",
        )
    else:
        conditions[ConditionType.OVERLAPPING] = Verdict(
            "False", Reason.NO_OVERLAP, "no newer rollout of the model selects these devices"
        )
    return Decision(st, conditions, work.events, requeue)


__all__ = [
    "CONDITION_TYPES",
    "Announcement",
    "Decision",
    "FleetDevice",
    "Measurement",
    "ModelInfo",
    "Tally",
    "choose_stable",
    "classify",
    "decide",
    "due_metrics",
    "evaluate_value",
    "failure_check",
    "fleet_device",
    "next_due",
    "own_view",
    "tally",
]
