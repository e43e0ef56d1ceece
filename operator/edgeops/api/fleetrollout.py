"""FleetRollout: move the devices matched by a selector to one EdgeModel version in steps.

A device's cohort is a pure hash of (rollout uid, device name) into 0..9999; a step at p %
targets the buckets below 100*p, so no per-device bookkeeping is needed. A step may also
choose devices by label (``steps[].selector``: a lab, one device per site) to go first.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from .common import (
    ApiModel,
    Delay,
    Duration,
    Identifier,
    LabelSelector,
    LocalObjectReference,
    SpecRoot,
    StatusBase,
    StatusModel,
    Timestamp,
    cel,
    list_map,
    unique,
    validations,
)

RolloutPhase = Literal["Pending", "Progressing", "Paused", "Succeeded", "Aborted", "RolledBack"]
#: Phases after which the rollout never changes again (a retry is a new FleetRollout).
TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Aborted", "RolledBack"})
#: One measurement: Inconclusive (too few samples, empty or NaN result) and Error (Prometheus
#: failed) are never a pass and never a failure.
Verdict = Literal["Pass", "Fail", "Inconclusive", "Error"]
Comparison = Literal[">=", "<="]
#: What an analysis threshold is compared with: the canary value itself (Absolute), or the
#: canary value minus the stable cohort's value of the same query (VsStable).
Baseline = Literal["Absolute", "VsStable"]
#: Why a rollout is Paused. Manual: spec.paused; Inconclusive: analysis had too little data
#: beyond inconclusiveLimit; AnalysisError: Prometheus could not be queried more often in a
#: row than errorLimit; StepDeadline: a step did not reach its success threshold within
#: progressDeadlineSeconds; FailureThreshold: failed devices or a failed analysis with
#: onFailure Pause.
PausedReason = Literal[
    "Manual", "Inconclusive", "AnalysisError", "StepDeadline", "FailureThreshold"
]
#: Terminal device outcomes a failure threshold may count.
FailureOutcome = Literal["Failed", "RolledBack", "TimedOut"]
OnFailure = Literal["Pause", "Abort", "Rollback"]
_ALL_OUTCOMES: tuple[FailureOutcome, ...] = ("Failed", "RolledBack", "TimedOut")

_ONE_PAUSE = "steps[].pause: set exactly one of duration or manual"
_INCREASING = (
    "spec.steps: percent values must not decrease, and steps with the same percent must "
    "set a selector (at most one of them may not)"
)
_PERCENT_OR_SELECTOR = "steps[].percent: 0 needs a selector (the step would target no device)"
_LAST_100 = "spec.steps: the last step must have percent 100"
_NEEDS_ANALYSIS = "spec.analysis: required when a step sets analysis: true"
_ONE_GATING = "spec.analysis.metrics: at least one metric must gate (dryRun false)"
_APPROVED_STEP = "spec.approvedStep: must be the index of one of spec.steps (0-based)"
_ABORT_FINAL = "spec.abort: an aborted rollout stays aborted; a retry is a new FleetRollout"


class Pause(ApiModel):
    """Wait after a step: for a duration, or until a person resumes (manual)."""

    model_config = ConfigDict(
        json_schema_extra=validations(cel("has(self.duration) != has(self.manual)", _ONE_PAUSE))
    )

    duration: Delay | None = Field(None, description="Wait this long, e.g. 10m (0s: no wait).")
    manual: bool | None = Field(
        None,
        description="Wait until spec.approvedStep is at least this step's index (set by a "
        "person with kubectl patch, or committed to Git).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Pause:
        if (self.duration is None) == (self.manual is None):
            raise ValueError(_ONE_PAUSE)
        return self


class RolloutStep(ApiModel):
    """A wave: raise the share of targeted devices to percent (plus the devices its
    selector chooses), then pause and/or analyse."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.percent > 0 || has(self.selector)", _PERCENT_OR_SELECTOR)
        )
    )

    percent: int = Field(
        ge=0,
        le=100,
        description="Share of selected devices (by cohort hash), 0..100; 0 only with a "
        "selector (a step of chosen devices alone).",
    )
    selector: LabelSelector | None = Field(
        None,
        description="Chosen devices this step targets besides its percent, e.g. a lab "
        "(matchLabels ring: lab) or devices labelled one per site: from this step on they "
        "run the version whatever their cohort bucket. Only devices spec.selector selects; "
        "an empty selector ({}) chooses none.",
    )
    pause: Pause | None = Field(None, description="Wait after the devices have updated.")
    analysis: bool = Field(False, description="Run spec.analysis after this step before moving on.")
    success_threshold: float = Field(
        95,
        ge=0,
        le=100,
        description="The step is complete once at least this % of its targeted devices run "
        "the version (fleets are never fully online; silent devices time out instead of "
        "holding the step forever). Default 95.",
    )

    @model_validator(mode="after")
    def _percent_or_selector(self) -> RolloutStep:
        if self.percent == 0 and self.selector is None:
            raise ValueError(_PERCENT_OR_SELECTOR)
        return self


class AnalysisMetric(ApiModel):
    """A PromQL check comparing the canary cohort against a threshold."""

    name: Identifier = Field(description="Name of the check, shown in status.")
    query: str = Field(
        min_length=1,
        max_length=4096,
        description="PromQL returning one number. {{namespace}}, {{model}}, {{version}}, "
        "{{stableVersion}} and {{cohort}} are replaced before the query runs.",
    )
    threshold: float = Field(description="Value the result is compared with.")
    op: Comparison = Field(description="Pass when result >= threshold, or <= threshold.")
    baseline: Baseline = Field(
        "Absolute",
        description="Absolute compares the canary value with the threshold; VsStable runs the "
        "query for the stable cohort too and compares (canary - stable) with it, e.g. "
        "op >= and threshold -0.02: canary accuracy at most 0.02 below stable.",
    )
    min_samples: int = Field(
        100,
        ge=1,
        le=1000000,
        description="Fewer inferences than this in the interval (the gateway's "
        "edgeops_device_inferences_total of the cohort, not the query) make the result "
        "Inconclusive, never a pass.",
    )
    initial_delay: Delay | None = Field(
        None, description="Wait this long after the analysis starts before the first measurement."
    )
    count: int = Field(
        1, ge=1, le=100, description="Pass measurements needed before the step may move on."
    )
    failure_limit: int = Field(
        0,
        ge=0,
        le=100,
        description="Fail measurements tolerated; one more fails the metric (0: the first).",
    )
    inconclusive_limit: int | None = Field(
        None,
        ge=0,
        le=100,
        description="Consecutive Inconclusive measurements tolerated; one more pauses the "
        "rollout (reason Inconclusive). Default: spec.analysis.inconclusiveLimit.",
    )
    error_limit: int = Field(
        4,
        ge=0,
        le=100,
        description="Consecutive Error measurements (Prometheus failed) tolerated; one more "
        "pauses the rollout (reason AnalysisError). An Error is never a pass or a failure.",
    )
    dry_run: bool = Field(
        False, description="Measured and shown in status, never gates or fails the rollout."
    )


class Analysis(ApiModel):
    """Metric analysis run after steps with analysis: true (and during bakeTime). An
    analysis of dry-run metrics only would pass with no gating measurement, so at least one
    metric gates."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.metrics.exists(m, !has(m.dryRun) || !m.dryRun)", _ONE_GATING)
        )
    )

    metrics: list[AnalysisMetric] = Field(
        min_length=1,
        max_length=8,
        json_schema_extra=list_map("name"),
        description="Checks; all must pass.",
    )
    interval: Duration = Field("1m", description="Time between measurements.")
    inconclusive_limit: int = Field(
        3,
        ge=0,
        le=100,
        description="Consecutive Inconclusive measurements tolerated per metric; one more "
        "pauses the rollout (reason Inconclusive).",
    )

    @model_validator(mode="after")
    def _one_gating(self) -> Analysis:
        if all(m.dry_run for m in self.metrics):
            raise ValueError(_ONE_GATING)
        return self


class DeviceRetries(ApiModel):
    """How often a device tries an update again after a download that failed (reason
    DownloadFailed or Interrupted), and how long it waits first."""

    limit: int = Field(
        2,
        ge=0,
        le=10,
        description="Attempts after the first (0: none). Until its last attempt failed, "
        "a device that failed with a retryable reason counts as in progress, not Failed.",
    )
    backoff_seconds: int = Field(
        30,
        ge=1,
        le=3600,
        description="Wait before the first retry; doubles for each further one, at most 1 "
        "hour. A device retries at its first report cycle after the wait.",
    )


class FailureThreshold(ApiModel):
    """When failed device updates trigger spec.onFailure."""

    percent: float = Field(
        5,
        ge=0,
        le=100,
        description="Exceeded when more than this % of the devices with a terminal outcome "
        "(Committed or one of the counted outcomes) have a counted outcome.",
    )
    min_devices: int = Field(
        1,
        ge=1,
        le=1000000,
        description="...and at least this many devices have a counted outcome (small cohorts).",
    )
    outcomes: list[FailureOutcome] = Field(
        default_factory=lambda: list(_ALL_OUTCOMES),
        min_length=1,
        max_length=3,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Device outcomes that count as failures: Failed, RolledBack, TimedOut.",
    )
    scope: Literal["PerStep", "Cumulative"] = Field(
        "Cumulative",
        description="Cumulative counts outcomes since the rollout started; PerStep only those "
        "reported since the current step started.",
    )

    @field_validator("outcomes")
    @classmethod
    def _unique_outcomes(cls, value: list[FailureOutcome]) -> list[FailureOutcome]:
        unique(list(value))
        return value


class FleetRolloutTemplate(ApiModel):
    """How to roll out: selector, steps, analysis and abort rules (no model or version)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!self.steps.exists(s, has(s.analysis) && s.analysis) || has(self.analysis)",
                _NEEDS_ANALYSIS,
            )
        )
    )

    selector: LabelSelector | None = Field(
        None, description="Devices (by label) in this namespace. Absent: all devices."
    )
    steps: list[RolloutStep] = Field(
        min_length=1,
        max_length=20,
        description="Waves with non-decreasing percent (a step repeating a percent adds "
        "chosen devices with its selector); the last is 100.",
        json_schema_extra=validations(
            cel(
                "self.map(s, s.percent).isSorted() && self.all(s, has(s.selector) || "
                "self.exists_one(t, t.percent == s.percent && !has(t.selector)))",
                _INCREASING,
            ),
            cel("self[size(self) - 1].percent == 100", _LAST_100),
        ),
    )
    analysis: Analysis | None = Field(None, description="Checks run after analysis steps.")
    failure_threshold: FailureThreshold = Field(
        default_factory=FailureThreshold, description="When failed updates trigger onFailure."
    )
    on_failure: OnFailure = Field(
        "Rollback",
        description="What exceeding the failure threshold, or a failed analysis, does. "
        "Rollback (default): phase RolledBack, devices already moved return to "
        "status.stableVersion, devices not yet moved are never touched. Abort: phase Aborted, "
        "no further device is told to update, moved devices keep the version. Pause: phase "
        "Paused (reason FailureThreshold) until acknowledged.",
    )
    device_timeout: Duration = Field(
        "1h",
        description="A targeted device that reports no terminal outcome for the version within "
        "this time after its step started counts as TimedOut. Default 1h.",
    )
    device_retries: DeviceRetries = Field(
        default_factory=DeviceRetries,
        description="Retries of failed downloads on each device, with backoff. Retries "
        "count within deviceTimeout.",
    )
    bake_time: Delay | None = Field(
        None,
        description="After the last step completes, keep measuring this long before Succeeded.",
    )
    max_updates_per_minute: int | None = Field(
        None,
        ge=1,
        le=100000,
        description="Rate limit of devices told to update: a step admits its cohort "
        "buckets gradually (status.admittedBuckets), at this many selected devices per "
        "minute, instead of all at once; the ramp stops while the rollout is paused.",
    )
    progress_deadline_seconds: int = Field(
        3600,
        ge=60,
        le=604800,
        description="A step that does not reach its success threshold within this time "
        "pauses the rollout (reason StepDeadline); it never aborts a healthy one.",
    )

    @model_validator(mode="after")
    def _steps(self) -> FleetRolloutTemplate:
        percents = [s.percent for s in self.steps]
        plain = [s.percent for s in self.steps if s.selector is None]
        if any(a > b for a, b in itertools.pairwise(percents)) or len(plain) != len(set(plain)):
            raise ValueError(_INCREASING)
        if percents[-1] != 100:
            raise ValueError(_LAST_100)
        if any(s.analysis for s in self.steps) and self.analysis is None:
            raise ValueError(_NEEDS_ANALYSIS)
        return self


class FleetRolloutSpec(FleetRolloutTemplate, SpecRoot):
    """Desired state of a FleetRollout."""

    # The template's rule again: json_schema_extra is replaced, not merged, in a subclass.
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!self.steps.exists(s, has(s.analysis) && s.analysis) || has(self.analysis)",
                _NEEDS_ANALYSIS,
            ),
            cel(
                "!has(self.approvedStep) || self.approvedStep < size(self.steps)",
                _APPROVED_STEP,
                field_path=".approvedStep",
            ),
        )
    )

    # What is rolled out is fixed for the life of the object: a different model or version
    # is a different rollout, with its own cohorts, analysis history and rollback target.
    model_ref: LocalObjectReference = Field(
        description="The EdgeModel to roll out. Immutable.",
        json_schema_extra=validations(cel("self == oldSelf", "spec.modelRef: immutable")),
    )
    version: int = Field(
        ge=1,
        description="EdgeModel version to move the devices to. Immutable: create a new "
        "FleetRollout for another version.",
        json_schema_extra=validations(cel("self == oldSelf", "spec.version: immutable")),
    )
    paused: bool = Field(
        False,
        description="Pause (reason Manual): no further step starts while true; devices already "
        "targeted keep updating and analysis keeps measuring. Set to false to resume.",
    )
    abort: bool = Field(
        False,
        description="Abort now (terminal): no further device is told to update, moved devices "
        "keep the version. A retry is a new FleetRollout.",
        json_schema_extra=validations(cel("self || !oldSelf", _ABORT_FINAL)),
    )
    acknowledged_pause: str | None = Field(
        None,
        max_length=128,
        description="Leave an automatic pause: set to the value of status.pauseId. Idempotent; "
        "a value that is not the current pause's id resumes nothing: it gets a Warning Event "
        "(AcknowledgementIgnored) naming the current pause id.",
    )
    approved_step: int | None = Field(
        None,
        ge=0,
        le=19,
        description="Highest step index (0-based) whose manual pause is approved. The operator "
        "never writes spec, so this is how a person lets a manual pause continue.",
    )

    @model_validator(mode="after")
    def _approved_step_exists(self) -> FleetRolloutSpec:
        if self.approved_step is not None and self.approved_step >= len(self.steps):
            raise ValueError(_APPROVED_STEP)
        return self


class DeviceCounts(StatusModel):
    """Devices by update state, among the devices the current step targets (the rollout is
    the newest of its model selecting them and their cohort bucket is admitted)."""

    targeted: int = Field(0, ge=0, description="Devices in the current step's cohort.")
    updated: int = Field(0, ge=0, description="Devices running the target version.")
    in_progress: int = Field(
        0,
        ge=0,
        description="Downloading, verifying, installing or health-checking it, or waiting to "
        "retry a failed download (see retrying).",
    )
    retrying: int = Field(
        0,
        ge=0,
        description="Of in progress: devices whose last attempt failed with a retryable "
        "reason (DownloadFailed, Interrupted) and that have spec.deviceRetries left.",
    )
    pending: int = Field(0, ge=0, description="Targeted, not yet reporting any update of it.")
    failed: int = Field(0, ge=0, description="Devices whose update reported Failed.")
    rolled_back: int = Field(0, ge=0, description="Devices whose agent rolled the update back.")
    timed_out: int = Field(
        0, ge=0, description="No terminal outcome within spec.deviceTimeout (or agent TimedOut)."
    )
    incompatible: int = Field(
        0, ge=0, description="No target of the EdgeModel fits the device's type and hardware."
    )
    offline: int = Field(
        0,
        ge=0,
        description="Targeted, not updated, and not seen for 3 report intervals (or never).",
    )
    overlapping: int = Field(
        0,
        ge=0,
        description="Selected devices a newer rollout of the same model governs; not counted.",
    )


class AnalysisResult(StatusModel):
    """One measurement of one analysis metric."""

    step: int = Field(ge=0, description="Index of the step.")
    metric: str = Field(max_length=63, description="Analysis metric name.")
    value: float | None = Field(None, description="Measured value; absent when no data.")
    threshold: float = Field(description="Threshold it was compared with.")
    samples: int = Field(0, ge=0, description="Inferences behind the value.")
    verdict: Verdict = Field(
        description="Pass, Fail, Inconclusive (too few samples, empty or NaN) or Error."
    )
    measured_at: Timestamp = Field(description="When the query ran.")
    message: str | None = Field(None, max_length=1024, description="Why, with the numbers.")


class MetricState(StatusModel):
    """The last measurement of one analysis metric and its tallies in the current analysis."""

    name: str = Field(max_length=63, description="Analysis metric name.")
    query: str = Field(max_length=8192, description="The PromQL as run (placeholders replaced).")
    value: float | None = Field(None, description="Last value; absent when there was none.")
    op: Comparison = Field(description="Comparison with the threshold.")
    threshold: float = Field(description="Threshold.")
    samples: int = Field(0, ge=0, description="Canary inferences behind the last value.")
    verdict: Verdict | None = Field(None, description="Verdict of the last measurement.")
    message: str | None = Field(None, max_length=1024, description="Why, with the numbers.")
    measured_at: Timestamp | None = Field(None, description="When it was last measured.")
    dry_run: bool = Field(False, description="Shown only, never gates.")
    passes: int = Field(0, ge=0, description="Pass measurements in this analysis.")
    failures: int = Field(0, ge=0, description="Fail measurements in this analysis.")
    inconclusive: int = Field(0, ge=0, description="Consecutive Inconclusive measurements.")
    errors: int = Field(0, ge=0, description="Consecutive Error measurements.")


class StepRecord(StatusModel):
    """What happened in one step: when it started and completed and its final counts."""

    step: int = Field(ge=0, description="Index of the step.")
    percent: int = Field(ge=0, le=100, description="Its percent.")
    started_at: Timestamp = Field(description="When the step started (devices were told).")
    completed_at: Timestamp | None = Field(
        None, description="When it reached its success threshold."
    )
    counts: DeviceCounts | None = Field(None, description="Counts when it was last evaluated.")


# The devices its selector matches were not this rollout's while it existed (the newest
# selecting rollout governs): their deviceTimeout runs from ``at``, their earlier reports
# are not this rollout's outcomes (edgeops.policy.rollout.handed_back_at).
class HandOver(StatusModel):
    """A deleted newer rollout whose devices came (back) under this one."""

    rollout: str = Field(max_length=253, description="The deleted FleetRollout.")
    selector: LabelSelector | None = Field(
        None, description="Its spec.selector (absent: every device of the model)."
    )
    at: Timestamp = Field(description="When it was deleted (the devices were handed over).")


class FleetRolloutStatus(StatusBase):
    """Observed state of a FleetRollout."""

    phase: RolloutPhase | None = Field(
        None, description="Pending, Progressing, Paused, Succeeded, Aborted or RolledBack."
    )
    current_step: int | None = Field(None, ge=0, description="Index of the current step.")
    current_percent: int | None = Field(
        None, ge=0, le=100, description="Percent of devices targeted now."
    )
    step_started_at: Timestamp | None = Field(None, description="When the current step began.")
    stable_version: int | None = Field(
        None, ge=1, description="Version devices return to on abort."
    )
    target_version: int | None = Field(None, ge=1, description="Version being rolled out.")
    counts: DeviceCounts | None = Field(None, description="Devices by update state.")
    analysis_results: list[AnalysisResult] = Field(
        default_factory=list, max_length=100, description="Recent measurements, oldest first."
    )
    paused_reason: PausedReason | None = Field(
        None,
        description="Why the rollout is Paused: Manual, Inconclusive, AnalysisError, "
        "StepDeadline, FailureThreshold.",
    )
    pause_id: str | None = Field(
        None,
        max_length=128,
        description="Identifies an automatic pause; copy it into spec.acknowledgedPause to "
        "leave the pause.",
    )
    message: str | None = Field(
        None, max_length=2048, description="The last decision, with the numbers behind it."
    )
    step_completed_at: Timestamp | None = Field(
        None, description="When the current step reached its success threshold."
    )
    analysis_started_at: Timestamp | None = Field(
        None, description="When the current analysis (or bake) began measuring."
    )
    resumed_at: Timestamp | None = Field(
        None, description="When an automatic pause was last acknowledged."
    )
    handled_acknowledgement: str | None = Field(
        None,
        max_length=128,
        description="The last spec.acknowledgedPause the controller acted on (it resumed a "
        "pause) or warned about (it matched no pause): each value is handled once.",
    )
    failures_acknowledged: int = Field(
        0,
        ge=0,
        description="Counted failures when a FailureThreshold pause was acknowledged; only "
        "failures beyond these trigger onFailure again.",
    )
    metrics: list[MetricState] = Field(
        default_factory=list,
        max_length=8,
        json_schema_extra=list_map("name"),
        description="Last measurement and tallies per analysis metric.",
    )
    steps: list[StepRecord] = Field(
        default_factory=list,
        max_length=20,
        json_schema_extra=list_map("step"),
        description="Per step: start, completion and counts.",
    )
    finished_at: Timestamp | None = Field(
        None, description="When the rollout reached a terminal phase."
    )
    admitted_buckets: int | None = Field(
        None,
        ge=0,
        le=10000,
        description="With spec.maxUpdatesPerMinute: cohort buckets (of 10000) the gateway "
        "admits now, ramping up to 100 x currentPercent. Absent: all of the step's.",
    )
    admission_rate: float | None = Field(
        None, ge=0, description="Buckets admitted per minute during the current step's ramp."
    )
    admitted_at: Timestamp | None = Field(
        None, description="When admittedBuckets was last raised (or the ramp frozen by a pause)."
    )
    handed_over: list[HandOver] = Field(
        default_factory=list,
        max_length=10,
        description="Deleted newer rollouts whose devices came (back) under this one, newest "
        "last (at most 10).",
    )
