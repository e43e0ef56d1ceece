"""TrainingRun: one training of one dataset version with one trainer image and config.

The spec is immutable: a run is a record of what was trained. To train differently,
create another TrainingRun (an EdgeModel does that for you).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field, field_validator

from .common import (
    LIST_SET,
    ApiModel,
    ArtifactRef,
    CodeVersion,
    DatasetRef,
    EvaluationMetrics,
    ExportFormat,
    Identifier,
    LocalObjectReference,
    ResourceRequirements,
    Sha256,
    SpecRoot,
    StatusBase,
    StatusModel,
    Timestamp,
    Uri,
    cel,
    unique,
    validations,
)

ModelFamily = Literal["auto", "dense", "conv1d", "cnn"]
TrainingReason = Literal["Manual", "Schedule", "DataChange", "CodeChange", "Drift", "Accuracy"]
TrainingPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
#: Phases a TrainingRun never leaves.
FINISHED_PHASES: Final[tuple[TrainingPhase, ...]] = ("Succeeded", "Failed")


class Hyperparameters(ApiModel):
    """Training hyperparameters. Absent values are chosen by the trainer and recorded."""

    epochs: int | None = Field(None, ge=1, le=10000, description="Training epochs.")
    batch_size: int | None = Field(None, ge=1, le=65536, description="Mini-batch size.")
    learning_rate: float | None = Field(None, gt=0, le=10, description="Optimizer learning rate.")
    seed: int | None = Field(
        None, ge=0, le=2147483647, description="Random seed, for reproducible runs."
    )
    model_family: ModelFamily = Field(
        "auto",
        description="Network family: dense (tabular), conv1d (time series), cnn (images), or "
        "auto to pick from the dataset's shape.",
    )


class TrainerSpec(ApiModel):
    """The container that trains: image, command and its configuration."""

    image: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="Trainer image. Absent: ghcr.io/edgeops/trainer at the operator's version.",
    )
    command: list[Annotated[str, Field(max_length=1024)]] | None = Field(
        None, max_length=16, description="Entrypoint override."
    )
    args: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        None, max_length=64, description="Arguments to the entrypoint."
    )
    config: dict[str, Any] | None = Field(
        None,
        description="Free-form trainer configuration, passed to the trainer as JSON. Part of "
        "the code version: changing it counts as a code change.",
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters, description="Training hyperparameters."
    )
    resources: ResourceRequirements | None = Field(
        None, description="CPU/memory requests and limits of the training container."
    )


class Evaluation(ApiModel):
    """How the trained model is evaluated on the test split."""

    metrics: list[Identifier] | None = Field(
        None,
        max_length=16,
        json_schema_extra=LIST_SET,
        description="Metrics to compute, e.g. accuracy, macro_f1, latency_ms. Absent: accuracy "
        "and macro_f1.",
    )
    slice_columns: list[Identifier] | None = Field(
        None,
        max_length=8,
        json_schema_extra=LIST_SET,
        description="Columns to report per-slice metrics for. Absent: the Dataset's "
        "schema.sliceColumns.",
    )

    @field_validator("metrics", "slice_columns")
    @classmethod
    def _unique_names(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else unique(value)


class TrainingTemplate(ApiModel):
    """What to train and how; shared by TrainingRun and EdgeModel.spec.training."""

    dataset_ref: DatasetRef = Field(description="Dataset (and optionally version) to train on.")
    trainer: TrainerSpec = Field(
        default_factory=TrainerSpec, description="Trainer image and configuration."
    )
    exports: list[ExportFormat] = Field(
        min_length=1,
        max_length=4,
        json_schema_extra=LIST_SET,
        description="Artifact formats to export: onnx, tflite, tflite-int8 (full-integer "
        "quantised) and tflm (TFLite-Micro C array for microcontrollers).",
    )
    evaluation: Evaluation = Field(default_factory=Evaluation, description="Evaluation.")
    backoff_limit: int = Field(
        1, ge=0, le=10, description="Retries of the training Job before the run fails."
    )
    active_deadline_seconds: int | None = Field(
        None, ge=1, le=604800, description="Time limit of the training Job."
    )

    @field_validator("exports")
    @classmethod
    def _unique_exports(cls, value: list[ExportFormat]) -> list[ExportFormat]:
        if len(set(value)) != len(value):
            raise ValueError("exports: values must be unique")
        return value


class FieldData(ApiModel):
    """The drifted world's rows in a run started for drift, so the run is reproducible and
    its lineage says what it learnt from. Field rows are the rows of ``datasetRef.version``
    that ``baselineVersion`` (the newest version published before the drift began) does
    not hold: what the fleet uploaded since. The trainer builds the reference profile
    (what the drift monitor compares the fleet with) from the field rows when there are at
    least ``minReferenceRows`` of them, else from all rows; it trains on all rows, with
    each field row repeated (at most ``maxRepeats`` times) so field rows carry at least
    ``weightShare`` of the training set, and earlier classes are not forgotten."""

    baseline_version: Sha256 = Field(
        description="Dataset version published at or before the drift began: rows it holds "
        "are pre-drift data."
    )
    drift_since: Timestamp | None = Field(
        None, description="status.drift.driftSince of the EdgeModel when the run started."
    )
    min_reference_rows: int = Field(
        50,
        ge=1,
        le=10_000_000,
        description="Fewest field rows the reference profile is built from; fewer: all rows.",
    )
    weight_share: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="Least share of the training rows the field rows make up (by repetition).",
    )
    max_repeats: int = Field(
        10, ge=1, le=100, description="Most copies of one field row in the training set."
    )


class TrainingRunSpec(TrainingTemplate, SpecRoot):
    """Desired state of a TrainingRun. Immutable after creation."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self == oldSelf",
                "spec: TrainingRun spec is immutable; create a new TrainingRun instead",
            )
        )
    )

    reason: TrainingReason = Field(
        "Manual",
        description="Why the run was started: Manual, Schedule, DataChange, CodeChange, Drift "
        "or Accuracy.",
    )
    model_ref: LocalObjectReference | None = Field(
        None, description="The EdgeModel this run trains a version for, if any."
    )
    field_data: FieldData | None = Field(
        None,
        description="Set on runs started for drift: which rows are field data collected "
        "since the drift, and how they shape the training set and the reference profile.",
    )


class EvaluationRef(StatusModel):
    """The evaluation EdgeOps ran over the run's exports: where its document is."""

    uri: Uri = Field(description="s3://bucket/key of the evaluation document.")
    sha256: Sha256 = Field(description="SHA-256 of the evaluation document.")
    format: str | None = Field(
        None,
        max_length=32,
        description="Export whose predictions gave the overall metrics (onnx, tflite, ...).",
    )


class FieldDataUsed(StatusModel):
    """What a run for drift learnt from (``spec.fieldData``), as its trainer reported it in
    ``results.json`` and the evaluator carried over: so ``kubectl get trainingrun -o yaml``
    shows why and how much the retrain leant on field data. The counts are the trainer's
    own report (informative, never gated)."""

    baseline_version: Sha256 = Field(description="spec.fieldData.baselineVersion.")
    drift_since: Timestamp | None = Field(None, description="spec.fieldData.driftSince.")
    field_rows: int | None = Field(
        None, ge=0, description="Rows of the run's dataset version the baseline lacks."
    )
    train_field_rows: int | None = Field(None, ge=0, description="Field rows in the train split.")
    copies: int | None = Field(
        None, ge=1, description="Copies of each field train row in the training set."
    )
    train_rows: int | None = Field(None, ge=0, description="Training rows, copies included.")
    weight: float | None = Field(
        None, ge=0, le=1, description="Share of the training rows that are field rows."
    )
    reference_from: Literal["field", "all"] | None = Field(
        None, description="Rows the reference profile was built from (field: the drifted world)."
    )
    reference_rows: int | None = Field(None, ge=0, description="Rows of the reference profile.")
    baseline_missing: bool = Field(
        False,
        description="The baseline version was deleted (retention): the run trained on all "
        "rows as without fieldData.",
    )


class TrainingRunStatus(StatusBase):
    """Observed state of a TrainingRun."""

    phase: TrainingPhase | None = Field(None, description="Pending, Running, Succeeded or Failed.")
    job_name: str | None = Field(None, max_length=63, description="Name of the training Job.")
    dataset_version: Sha256 | None = Field(None, description="Dataset version trained on.")
    code_version: CodeVersion | None = Field(None, description="Trainer image and config hash.")
    metrics: EvaluationMetrics | None = Field(
        None,
        description="Test-split metrics measured by EdgeOps's evaluator on the exported "
        "artifacts (never the trainer's own report).",
    )
    evaluation: EvaluationRef | None = Field(
        None, description="The evaluation the metrics come from (set once Succeeded)."
    )
    artifacts: list[ArtifactRef] = Field(
        default_factory=list, max_length=32, description="Exported files."
    )
    start_time: Timestamp | None = Field(None, description="When the Job started.")
    completion_time: Timestamp | None = Field(None, description="When the Job finished.")
    field_data: FieldDataUsed | None = Field(
        None,
        description="For a run with spec.fieldData, once Succeeded: the field rows it "
        "learnt from and their weight.",
    )
