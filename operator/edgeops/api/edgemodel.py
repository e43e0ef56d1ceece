"""EdgeModel: a model line - how to train it, where it runs, what it must pass, when to
retrain and how to promote. Its status is the model registry: versions 1..N with lineage.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from .common import (
    DNS_LABEL,
    ApiModel,
    ArtifactRef,
    CodeVersion,
    Cron,
    Duration,
    EvaluationMetrics,
    ExportFormat,
    Identifier,
    LocalObjectReference,
    Sha256,
    SpecRoot,
    StatusBase,
    StatusModel,
    TargetType,
    Timestamp,
    Uri,
    cel,
    list_map,
    validations,
)
from .fleetrollout import Comparison, FleetRolloutTemplate
from .trainingrun import TrainingReason, TrainingTemplate

VersionState = Literal["Candidate", "Approved", "Rejected", "Retired"]

_MCU_TFLM = "targets[].format: mcu targets must use format tflm"
_TFLM_MCU = "targets[].format: tflm is only for mcu targets"
_AUTO_TEMPLATE = "spec.promotion.rolloutTemplate: required when mode is Auto"
_REPLICAS = "spec.serving: minReplicas must not exceed maxReplicas"
_EXPORTED = "spec.targets: every target format must be listed in spec.training.exports"


class Target(ApiModel):
    """A class of devices the model is built for, with its size and latency budget."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.targetType != 'mcu' || self.format == 'tflm'", _MCU_TFLM),
            cel("self.targetType != 'linux' || self.format != 'tflm'", _TFLM_MCU),
        )
    )

    name: str = Field(max_length=63, pattern=DNS_LABEL, description="Target name, e.g. pi4.")
    target_type: TargetType = Field(description="linux or mcu, as in Device spec.targetType.")
    format: ExportFormat = Field(
        description="Artifact shipped to these devices: onnx, tflite or tflite-int8 for "
        "linux, tflm for mcu."
    )
    hardware: str | None = Field(
        None,
        max_length=128,
        description="Only devices whose spec.hardware equals this. Absent: every device of "
        "the target type.",
    )
    max_size_bytes: int | None = Field(
        None, ge=1, description="Gate: artifact must not be larger (bytes)."
    )
    max_latency_ms: float | None = Field(
        None, gt=0, description="Gate: measured single-inference latency must not exceed (ms)."
    )

    @model_validator(mode="after")
    def _format_fits(self) -> Target:
        if self.target_type == "mcu" and self.format != "tflm":
            raise ValueError(_MCU_TFLM)
        if self.target_type == "linux" and self.format == "tflm":
            raise ValueError(_TFLM_MCU)
        return self


_FAIRNESS_CONFIDENCE = (
    "spec.gates.fairnessConfidence: needs fairnessMetric accuracy (a proportion, whose gap "
    "has Newcombe's interval)"
)


class AbsoluteGate(ApiModel):
    """A metric must meet a fixed threshold."""

    metric: Identifier = Field(description="Overall test metric, e.g. accuracy.")
    op: Comparison = Field(description=">= or <=.")
    threshold: float = Field(description="Threshold the metric is compared with.")
    confidence: float | None = Field(
        None,
        ge=0.5,
        le=0.999,
        description="Require the bound of the metric's two-sided confidence interval at this "
        "level (the lower bound for >=, the upper for <=) to clear the threshold, not the "
        "point estimate: accuracy 12/12 has a 0.95 Wilson lower bound of 0.757. Proportions "
        "(accuracy, <format>_accuracy) use the Wilson score interval at this level; other "
        "metrics the evaluator's bootstrap interval, computed at 0.95 only. Absent: the "
        "point estimate is compared.",
    )


_RELATIVE_CONFIDENCE = (
    "spec.gates.relative[].confidence: needs metric accuracy or <format>_accuracy (a "
    "proportion, whose change has Newcombe's interval)"
)


class RelativeGate(ApiModel):
    """A metric must not be much worse than the current version's."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.confidence) || self.metric == 'accuracy' || "
                "self.metric.endsWith('_accuracy')",
                _RELATIVE_CONFIDENCE,
                field_path=".confidence",
            )
        )
    )

    metric: Identifier = Field(description="Overall test metric, e.g. accuracy.")
    max_degradation: float = Field(
        ge=0, description="Allowed worsening against the current version."
    )
    mode: Literal["absolute", "relative"] = Field(
        "absolute",
        description="absolute: maxDegradation is in metric units; relative: a fraction of "
        "the current value.",
    )
    higher_is_better: bool = Field(
        True, description="false for metrics such as latency_ms or loss."
    )
    confidence: float | None = Field(
        None,
        ge=0.5,
        le=0.999,
        description="Require the bound of the change's two-sided Newcombe interval at this "
        "level (candidate minus current, from both versions' test counts) to stay within "
        "the allowed worsening, not the point change: 12/12 after 37/37 has a 0.95 lower "
        "bound of -0.2425. Proportions only (accuracy, <format>_accuracy). Absent: the "
        "point values are compared.",
    )

    @model_validator(mode="after")
    def _confidence_needs_a_proportion(self) -> RelativeGate:
        if self.confidence is not None and not (
            self.metric == "accuracy" or self.metric.endswith("_accuracy")
        ):
            raise ValueError(_RELATIVE_CONFIDENCE)
        return self


class Gates(ApiModel):
    """Checks a new version must pass before it can be promoted."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.fairnessConfidence) || !has(self.fairnessMetric) || "
                "self.fairnessMetric == 'accuracy'",
                _FAIRNESS_CONFIDENCE,
                field_path=".fairnessConfidence",
            )
        )
    )

    absolute: list[AbsoluteGate] = Field(
        default_factory=list, max_length=16, description="Fixed thresholds."
    )
    relative: list[RelativeGate] = Field(
        default_factory=list, max_length=16, description="Comparisons with the current version."
    )
    max_fairness_gap: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Largest allowed difference of fairnessMetric between the best and the "
        "worst slice.",
    )
    fairness_metric: Identifier = Field("accuracy", description="Metric compared across slices.")
    fairness_confidence: float | None = Field(
        None,
        ge=0.5,
        le=0.999,
        description="Require the upper bound of every slice pair's gap (Newcombe's hybrid "
        "score interval for a difference of two proportions, at this two-sided level) to be "
        "at most maxFairnessGap, not the measured gap: a gap of 0.10 on two slices of 150 "
        "rows cannot show that the true gap is below 0.05. Needs fairnessMetric accuracy. "
        "Absent: the measured gap is compared.",
    )
    require_int8_accuracy_within: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Largest allowed accuracy drop of the int8 (tflite-int8, tflm) artifacts "
        "against the float model.",
    )

    @model_validator(mode="after")
    def _fairness_confidence(self) -> Gates:
        if self.fairness_confidence is not None and self.fairness_metric != "accuracy":
            raise ValueError(_FAIRNESS_CONFIDENCE)
        return self


DriftMethod = Literal["psi", "js", "ks", "wasserstein"]
DriftVerdict = Literal["Drift", "NoDrift", "Inconclusive", "Error"]
_FIXED_METHOD = "spec.retrain.onDrift: thresholds Fixed needs method psi or js"


class DriftTrigger(ApiModel):
    """Retrain when fleet telemetry drifts from the training reference.

    Every ``interval`` the operator sums the fleet's per-feature bin counts over ``window``
    (Prometheus) for the version the fleet runs and compares them with that version's
    reference profile: per feature ``method``'s statistic against a threshold calibrated
    on the reference data for the window's sample size (a bootstrap p-value at level
    ``alpha / features``, Bonferroni) and at least ``minEffect``; or, with ``thresholds:
    Fixed``, against ``psiThreshold`` / ``jsThreshold``. Labelled feedback gives the
    concept-drift verdict against the version's test accuracy."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.thresholds) || self.thresholds != 'Fixed' || "
                "!has(self.method) || self.method in ['psi', 'js']",
                _FIXED_METHOD,
            )
        )
    )

    enabled: bool = Field(False, description="Whether drift triggers retraining.")
    method: DriftMethod = Field(
        "psi",
        description="Per-feature statistic: psi, js (Jensen-Shannon distance, log base 2), "
        "ks (binned Kolmogorov-Smirnov) or wasserstein (in reference standard deviations). "
        "Categorical features use js for ks and wasserstein.",
    )
    thresholds: Literal["Calibrated", "Fixed"] = Field(
        "Calibrated",
        description="Calibrated: bootstrap threshold on the reference data at level "
        "alpha/features plus minEffect. Fixed: psiThreshold or jsThreshold (method psi or js).",
    )
    alpha: float = Field(
        0.05,
        gt=0,
        le=0.5,
        description="Probability of a false alarm per measurement over all features "
        "(Bonferroni), also the level of the concept-drift test.",
    )
    min_effect: float | None = Field(
        None,
        ge=0,
        le=10,
        description="Smallest statistic that counts as drift, however significant. Absent: "
        "0.1 for every method.",
    )
    psi_threshold: float = Field(
        0.2,
        gt=0,
        le=10,
        description="Fixed thresholds only: Population Stability Index above which data drifted.",
    )
    js_threshold: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Fixed thresholds only: Jensen-Shannon distance above which data drifted.",
    )
    accuracy_drop_threshold: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Accuracy drop on labelled feedback (against the version's test "
        "accuracy) above which the concept drifted, when significant at alpha.",
    )
    window: Duration = Field("1h", description="Telemetry window compared with the reference.")
    interval: Duration = Field("5m", description="Time between two measurements.")
    min_samples: int = Field(
        500,
        ge=1,
        le=100000000,
        description="Fewer samples in the window (per feature, or feedback): Inconclusive.",
    )

    @model_validator(mode="after")
    def _fixed_method(self) -> DriftTrigger:
        if self.thresholds == "Fixed" and self.method not in ("psi", "js"):
            raise ValueError(_FIXED_METHOD)
        return self


class RetrainPolicy(ApiModel):
    """When a new TrainingRun is started."""

    schedule: Cron | None = Field(None, description="Cron schedule, e.g. '0 3 * * 0'.")
    on_new_dataset_version: bool = Field(True, description="Retrain on a new dataset version.")
    on_code_change: bool = Field(
        True, description="Retrain when the trainer image or config changes."
    )
    on_drift: DriftTrigger = Field(default_factory=DriftTrigger, description="Drift trigger.")
    cooldown: Duration = Field("1h", description="Minimum time between two triggered runs.")
    max_concurrent_runs: int = Field(
        1, ge=1, le=10, description="TrainingRuns of this model running at once."
    )


class Promotion(ApiModel):
    """What happens to a version that passed its gates."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.mode != 'Auto' || has(self.rolloutTemplate)", _AUTO_TEMPLATE)
        )
    )

    mode: Literal["Manual", "Auto"] = Field(
        "Manual",
        description="Manual: the version stays Candidate until someone creates a FleetRollout "
        "for it. Auto: the operator creates one from rolloutTemplate.",
    )
    rollout_template: FleetRolloutTemplate | None = Field(
        None, description="FleetRollout spec (without model and version) used by Auto."
    )

    @model_validator(mode="after")
    def _template(self) -> Promotion:
        if self.mode == "Auto" and self.rollout_template is None:
            raise ValueError(_AUTO_TEMPLATE)
        return self


class Serving(ApiModel):
    """Optional cloud-side serving of the ONNX artifact with KServe."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.minReplicas) || !has(self.maxReplicas) || "
                "self.minReplicas <= self.maxReplicas",
                _REPLICAS,
                field_path=".minReplicas",
            )
        )
    )

    enabled: bool = Field(False, description="Create a KServe InferenceService.")
    runtime: str | None = Field(
        None,
        max_length=253,
        description="ServingRuntime name. Absent: the EdgeOps predictor.",
    )
    min_replicas: int = Field(1, ge=0, le=100, description="Minimum predictor replicas.")
    max_replicas: int = Field(1, ge=1, le=100, description="Maximum predictor replicas.")

    @model_validator(mode="after")
    def _replicas(self) -> Serving:
        if self.min_replicas > self.max_replicas:
            raise ValueError(_REPLICAS)
        return self


class SamplingPolicy(ApiModel):
    """Which inputs devices upload for collection (continuous data collection): rows the
    model was unsure about, rows whose label proved it wrong, and a small random share."""

    dataset_ref: LocalObjectReference = Field(
        description="Dataset in the same namespace with an inbox source: uploaded rows are "
        "written under its inbox prefix and become its next version."
    )
    confidence_below: float | None = Field(
        0.6,
        ge=0,
        le=1,
        description="Upload inputs whose top-class confidence is below this; null: none.",
    )
    misclassified: bool = Field(
        True, description="Upload labelled inputs whose prediction was wrong."
    )
    random_share: float = Field(
        0.0, ge=0, le=1, description="Share of all other inputs uploaded at random (0..1)."
    )
    max_rows_per_hour: int = Field(
        120, ge=0, le=36000, description="Per-device cap on uploaded rows per hour."
    )


class EdgeModelSpec(SpecRoot):
    """Desired state of an EdgeModel."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self.targets.all(t, t.format in self.training.exports)", _EXPORTED)
        )
    )

    training: TrainingTemplate = Field(description="Template of the TrainingRuns.")
    targets: list[Target] = Field(
        min_length=1,
        max_length=16,
        json_schema_extra=list_map("name"),
        description="Device classes the model ships to.",
    )
    gates: Gates = Field(default_factory=Gates, description="Checks before promotion.")
    retrain: RetrainPolicy = Field(default_factory=RetrainPolicy, description="When to retrain.")
    promotion: Promotion = Field(default_factory=Promotion, description="How to promote.")
    serving: Serving | None = Field(None, description="Cloud-side serving with KServe.")
    sampling: SamplingPolicy | None = Field(
        None, description="What devices upload for collection; none when absent."
    )
    history_limit: int = Field(
        50, ge=1, le=200, description="Versions kept in status (Rejected/Retired pruned first)."
    )

    @model_validator(mode="after")
    def _exported(self) -> EdgeModelSpec:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("spec.targets: names must be unique")
        if any(t.format not in self.training.exports for t in self.targets):
            raise ValueError(_EXPORTED)
        return self


class GateCheck(StatusModel):
    """The outcome of one gate."""

    name: str = Field(max_length=128, description="Gate name, e.g. absolute/accuracy.")
    metric: str | None = Field(None, max_length=63, description="Metric checked.")
    value: float | None = Field(None, description="Measured value.")
    threshold: float | None = Field(None, description="Threshold it was compared with.")
    op: str | None = Field(None, max_length=8, description="Comparison used.")
    samples: int | None = Field(None, ge=0, description="Test samples behind the value.")
    low: float | None = Field(None, description="Lower bound of the value's interval.")
    high: float | None = Field(None, description="Upper bound of the value's interval.")
    confidence: float | None = Field(
        None, description="Level of that interval; set when the gate required its bound."
    )
    source: str | None = Field(
        None,
        max_length=32,
        description="Latency checks: where the number comes from - estimate (operation count "
        "and the hardware profile) or host (timed on the evaluator's CPU).",
    )
    passed: bool = Field(description="Whether the check passed.")
    message: str = Field("", max_length=1024, description="Explanation with the numbers.")


class GateVerdict(StatusModel):
    """All gate outcomes of a version."""

    passed: bool = Field(description="True when every check passed.")
    checks: list[GateCheck] = Field(
        default_factory=list, max_length=64, description="Individual checks."
    )


class Signature(StatusModel):
    """Ed25519 signature of a version's bundle manifest."""

    key_id: str = Field(max_length=128, description="Id of the signing key.")
    manifest_uri: Uri = Field(description="s3:// URI of the signed manifest.")
    signature: str = Field(max_length=256, description="Base64 Ed25519 signature.")
    expires_at: Timestamp | None = Field(
        None,
        description="When the signed manifests expire (verifiers refuse them after); the "
        "operator signs an approved version again before. Absent: signed before manifests "
        "carried an expiry.",
    )


class ModelVersion(StatusModel):
    """An immutable model version and its lineage."""

    number: int = Field(ge=1, description="Version number, 1..N.")
    training_run: str = Field(max_length=253, description="TrainingRun that produced it.")
    dataset_version: Sha256 | None = Field(None, description="Dataset version trained on.")
    code_version: CodeVersion | None = Field(None, description="Trainer image and config.")
    metrics: EvaluationMetrics | None = Field(None, description="Test-split metrics.")
    artifacts: list[ArtifactRef] = Field(
        default_factory=list, max_length=32, description="Exported files."
    )
    sizes: dict[str, int] = Field(
        default_factory=dict, max_length=16, description="Artifact bytes per target name."
    )
    gates: GateVerdict | None = Field(None, description="Gate outcomes.")
    signature: Signature | None = Field(None, description="Bundle signature.")
    created: Timestamp = Field(description="When the version was registered.")
    state: VersionState = Field(description="Candidate, Approved, Rejected or Retired.")
    reason: str | None = Field(None, max_length=1024, description="Why it is in this state.")


class FeatureDrift(StatusModel):
    """One feature's drift measurement: the statistic, what it was compared with, and why."""

    feature: str = Field(max_length=128, description="Feature name (reference profile).")
    method: DriftMethod = Field(description="Statistic used.")
    verdict: Literal["Drift", "NoDrift", "Inconclusive"] = Field(description="Verdict.")
    statistic: float | None = Field(None, description="Measured statistic.")
    threshold: float | None = Field(
        None, description="Threshold it was compared with (calibrated or fixed)."
    )
    p_value: float | None = Field(
        None, ge=0, le=1, description="Bootstrap p-value under the calibrated null."
    )
    samples: int = Field(0, ge=0, description="Live samples in the window (missing included).")
    reason: str = Field("", max_length=512, description="The verdict in words with numbers.")


class DriftSummary(StatusModel):
    """Latest drift measurement of the fleet against the reference of the version it runs."""

    psi: float | None = Field(None, ge=0, description="Largest per-feature PSI.")
    js: float | None = Field(None, ge=0, le=1, description="Largest Jensen-Shannon distance.")
    accuracy: float | None = Field(None, ge=0, le=1, description="Accuracy on feedback.")
    per_feature_psi: dict[str, float] = Field(
        default_factory=dict, max_length=256, description="PSI per feature."
    )
    samples: int | None = Field(None, ge=0, description="Samples in the window.")
    window: str | None = Field(None, max_length=32, description="Window measured.")
    measured_at: Timestamp | None = Field(None, description="When it was measured.")
    version: int | None = Field(None, ge=1, description="Model version measured.")
    verdict: DriftVerdict | None = Field(
        None,
        description="Data drift: Drift, NoDrift, Inconclusive (too few samples, empty, NaN) "
        "or Error (Prometheus or the profile unavailable). Absent: written by hand, judged "
        "by the fixed PSI/JS thresholds.",
    )
    reason: str | None = Field(None, max_length=1024, description="Data verdict with numbers.")
    worst_feature: str | None = Field(
        None, max_length=128, description="Drifting feature with the smallest p-value."
    )
    alpha: float | None = Field(None, description="Level over all features.")
    features: list[FeatureDrift] = Field(
        default_factory=list, max_length=256, description="Per-feature measurements."
    )
    drift_since: Timestamp | None = Field(
        None,
        description="First measurement of the data drift that still stands (Inconclusive "
        "and Error keep it; NoDrift clears it).",
    )
    concept_verdict: DriftVerdict | None = Field(None, description="Concept drift verdict.")
    concept_reason: str | None = Field(
        None, max_length=1024, description="Concept verdict with numbers."
    )
    feedback_samples: int | None = Field(None, ge=0, description="Labelled feedback counted.")
    test_accuracy: float | None = Field(
        None, ge=0, le=1, description="The version's test accuracy compared with."
    )
    concept_p_value: float | None = Field(
        None, ge=0, le=1, description="One-sided p-value of the accuracy drop."
    )
    concept_drift_since: Timestamp | None = Field(
        None, description="First measurement of the concept drift that still stands."
    )


class TriggerState(StatusModel):
    """What the retraining triggers and user requests were last acted on, so that each
    change starts exactly one TrainingRun and each request is handled once."""

    dataset_version: Sha256 | None = Field(
        None, description="Dataset version the last triggered run was started for."
    )
    code_hash: Sha256 | None = Field(
        None, description="SHA-256 of the trainer image and config the last run used."
    )
    retrain_request: str | None = Field(
        None, max_length=253, description="Last handled edgeops.dev/retrain annotation."
    )
    promote_request: str | None = Field(
        None, max_length=253, description="Last handled edgeops.dev/promote annotation."
    )
    drift_measured_at: Timestamp | None = Field(
        None, description="status.drift.measuredAt of the last drift signal acted on."
    )
    drift_dataset_version: Sha256 | None = Field(
        None,
        description="Dataset version of the last run a drift or accuracy signal took part in: "
        "drift that persists retrains again only once there is new data.",
    )
    schedule_checked_at: Timestamp | None = Field(
        None, description="Cron ticks up to this time have been acted on."
    )
    last_trigger_time: Timestamp | None = Field(
        None, description="When the last triggered run was started (cooldown reference)."
    )
    last_reasons: list[TrainingReason] = Field(
        default_factory=list,
        max_length=6,
        description="Every trigger folded into the last run, the winning one first.",
    )
    run_counter: int = Field(0, ge=0, description="TrainingRuns started (<model>-r<n>).")
    promotion_counter: int = Field(0, ge=0, description="FleetRollouts created (<model>-p<n>).")


class EdgeModelStatus(StatusBase):
    """Observed state of an EdgeModel: the model registry."""

    versions: list[ModelVersion] = Field(
        default_factory=list,
        max_length=200,
        json_schema_extra=list_map("number"),
        description="Registered versions, oldest first.",
    )
    current_version: int | None = Field(None, ge=1, description="Version the fleet runs.")
    fleet_version: int | None = Field(
        None,
        ge=1,
        description="Version the newest Succeeded FleetRollout of this model moved its "
        "devices to (read from the rollout's status; each Device's status says what it runs).",
    )
    fleet_rollout: str | None = Field(None, max_length=253, description="That FleetRollout.")
    candidate_version: int | None = Field(
        None, ge=1, description="Newest version that passed its gates, not yet current."
    )
    drift: DriftSummary | None = Field(None, description="Latest drift measurement.")
    last_training_run: str | None = Field(None, max_length=253, description="Latest run.")
    last_training_time: Timestamp | None = Field(None, description="When it was started.")
    latest_version: int | None = Field(
        None, ge=1, description="Highest version number assigned; numbers are never reused."
    )
    triggers: TriggerState | None = Field(None, description="Trigger bookkeeping.")
