"""FleetRollout: move the devices matched by a selector to one EdgeModel version in steps.

A device's cohort is a pure hash of (rollout uid, device name) into 0..9999; a step at p %
targets the buckets below 100*p, so no per-device bookkeeping is needed.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from .common import (
    ApiModel,
    Duration,
    Identifier,
    LabelSelector,
    LocalObjectReference,
    StatusBase,
    StatusModel,
    Timestamp,
    cel,
    list_map,
    validations,
)

RolloutPhase = Literal["Pending", "Progressing", "Paused", "Succeeded", "Aborted", "RolledBack"]
Verdict = Literal["Pass", "Fail", "Inconclusive"]
Comparison = Literal[">=", "<="]

_ONE_PAUSE = "steps[].pause: set exactly one of duration or manual"
_INCREASING = "spec.steps: percent values must strictly increase"
_LAST_100 = "spec.steps: the last step must have percent 100"
_NEEDS_ANALYSIS = "spec.analysis: required when a step sets analysis: true"


class Pause(ApiModel):
    """Wait after a step: for a duration, or until a person resumes (manual)."""

    model_config = ConfigDict(
        json_schema_extra=validations(cel("has(self.duration) != has(self.manual)", _ONE_PAUSE))
    )

    duration: Duration | None = Field(None, description="Wait this long, e.g. 10m.")
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
    """A wave: raise the share of targeted devices to percent, then pause and/or analyse."""

    percent: int = Field(ge=1, le=100, description="Share of selected devices, 1..100.")
    pause: Pause | None = Field(None, description="Wait after the devices have updated.")
    analysis: bool = Field(False, description="Run spec.analysis after this step before moving on.")


class AnalysisMetric(ApiModel):
    """A PromQL check comparing the canary cohort against a threshold."""

    name: Identifier = Field(description="Name of the check, shown in status.")
    query: str = Field(
        min_length=1,
        max_length=4096,
        description="PromQL returning one number. {{namespace}}, {{model}}, {{version}} and "
        "{{cohort}} are replaced before the query runs.",
    )
    threshold: float = Field(description="Value the result is compared with.")
    op: Comparison = Field(description="Pass when result >= threshold, or <= threshold.")
    min_samples: int = Field(
        100,
        ge=1,
        le=1000000,
        description="Fewer inferences than this in the interval make the result "
        "Inconclusive, never a pass.",
    )


class Analysis(ApiModel):
    """Metric analysis run after steps with analysis: true."""

    metrics: list[AnalysisMetric] = Field(
        min_length=1,
        max_length=8,
        json_schema_extra=list_map("name"),
        description="Checks; all must pass.",
    )
    interval: Duration = Field("1m", description="Time between measurements.")
    inconclusive_limit: int = Field(
        3,
        ge=1,
        le=100,
        description="Consecutive Inconclusive measurements after which the rollout pauses.",
    )


class FailureThreshold(ApiModel):
    """When failed device updates abort the rollout."""

    percent: float = Field(
        5, ge=0, le=100, description="Abort when more than this % of updated devices failed."
    )
    min_devices: int = Field(
        1,
        ge=1,
        le=1000000,
        description="Abort only once at least this many devices failed (small cohorts).",
    )


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
        description="Waves with strictly increasing percent; the last is 100.",
        json_schema_extra=validations(
            cel(
                "self.map(s, s.percent).isSorted() && "
                "self.all(s, self.exists_one(t, t.percent == s.percent))",
                _INCREASING,
            ),
            cel("self[size(self) - 1].percent == 100", _LAST_100),
        ),
    )
    analysis: Analysis | None = Field(None, description="Checks run after analysis steps.")
    failure_threshold: FailureThreshold = Field(
        default_factory=FailureThreshold, description="When failed updates abort the rollout."
    )
    max_updates_per_minute: int | None = Field(
        None, ge=1, le=100000, description="Rate limit of devices told to update."
    )
    progress_deadline_seconds: int = Field(
        3600,
        ge=60,
        le=604800,
        description="A step that does not finish within this time aborts the rollout.",
    )

    @model_validator(mode="after")
    def _steps(self) -> FleetRolloutTemplate:
        percents = [s.percent for s in self.steps]
        if any(a >= b for a, b in itertools.pairwise(percents)):
            raise ValueError(_INCREASING)
        if percents[-1] != 100:
            raise ValueError(_LAST_100)
        if any(s.analysis for s in self.steps) and self.analysis is None:
            raise ValueError(_NEEDS_ANALYSIS)
        return self


class FleetRolloutSpec(FleetRolloutTemplate):
    """Desired state of a FleetRollout."""

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
    paused: bool = Field(False, description="Stop after the current step; set to false to resume.")
    approved_step: int | None = Field(
        None,
        ge=0,
        le=19,
        description="Highest step index (0-based) whose manual pause is approved. The operator "
        "never writes spec, so this is how a person lets a manual pause continue.",
    )


class DeviceCounts(StatusModel):
    """Devices by update state."""

    targeted: int = Field(0, ge=0, description="Devices in the current step's cohort.")
    updated: int = Field(0, ge=0, description="Devices running the target version.")
    failed: int = Field(0, ge=0, description="Devices whose update failed or rolled back.")
    pending: int = Field(0, ge=0, description="Targeted devices not yet updated.")


class AnalysisResult(StatusModel):
    """One measurement of one analysis metric."""

    step: int = Field(ge=0, description="Index of the step.")
    metric: str = Field(max_length=63, description="Analysis metric name.")
    value: float | None = Field(None, description="Measured value; absent when no data.")
    threshold: float = Field(description="Threshold it was compared with.")
    samples: int = Field(0, ge=0, description="Inferences behind the value.")
    verdict: Verdict = Field(description="Pass, Fail or Inconclusive (too few samples).")
    measured_at: Timestamp = Field(description="When the query ran.")


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
