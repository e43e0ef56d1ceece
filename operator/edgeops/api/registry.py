"""One entry per kind: names, models and ``kubectl get`` columns. The CRD generator and the
controllers both read this table, so a kind is declared in exactly one place."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from . import constants as c
from .dataset import DatasetSpec, DatasetStatus
from .device import DeviceSpec, DeviceStatus
from .edgemodel import EdgeModelSpec, EdgeModelStatus
from .fleetrollout import FleetRolloutSpec, FleetRolloutStatus
from .trainingrun import TrainingRunSpec, TrainingRunStatus


@dataclass(frozen=True)
class PrinterColumn:
    """An ``additionalPrinterColumns`` entry. priority 1 = only with ``-o wide``."""

    name: str
    json_path: str
    type: str
    description: str
    priority: int = 0
    format: str | None = None


@dataclass(frozen=True)
class KindInfo:
    """Everything needed to describe one custom resource kind."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    columns: tuple[PrinterColumn, ...]
    name_max_length: int = 253

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{c.GROUP}"


READY = PrinterColumn(
    "Ready", '.status.conditions[?(@.type=="Ready")].status', "string", "Ready condition"
)
REASON = PrinterColumn(
    "Reason",
    '.status.conditions[?(@.type=="Ready")].reason',
    "string",
    "Reason of the Ready condition",
    priority=1,
)
AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date", "Time since creation")

KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        kind=c.DATASET,
        plural=c.DATASETS,
        short_names=c.SHORT_NAMES[c.DATASET],
        spec=DatasetSpec,
        status=DatasetStatus,
        description="A named, versioned collection of samples in S3. Each version is the "
        "SHA-256 of a manifest of its objects: same content, same version.",
        columns=(
            READY,
            PrinterColumn("Latest", ".status.latestVersion", "string", "Newest version"),
            PrinterColumn(
                "Class",
                ".spec.governance.classification",
                "string",
                "Data classification",
                priority=1,
            ),
            PrinterColumn("Format", ".spec.format", "string", "File format", priority=1),
            PrinterColumn(
                "Collected",
                ".status.lastCollectionTime",
                "date",
                "Last collection",
                priority=1,
            ),
            REASON,
            AGE,
        ),
    ),
    KindInfo(
        kind=c.TRAINING_RUN,
        plural=c.TRAINING_RUNS,
        short_names=c.SHORT_NAMES[c.TRAINING_RUN],
        spec=TrainingRunSpec,
        status=TrainingRunStatus,
        description="One training of one dataset version with one trainer image and config. "
        "The spec is immutable.",
        columns=(
            READY,
            PrinterColumn("Phase", ".status.phase", "string", "Pending/Running/Succeeded/Failed"),
            PrinterColumn("Dataset", ".spec.datasetRef.name", "string", "Dataset trained on"),
            PrinterColumn("Model", ".spec.modelRef.name", "string", "EdgeModel", priority=1),
            PrinterColumn("Trigger", ".spec.reason", "string", "Why it ran", priority=1),
            PrinterColumn("Job", ".status.jobName", "string", "Training Job", priority=1),
            REASON,
            AGE,
        ),
        name_max_length=c.TRAINING_RUN_NAME_MAX,
    ),
    KindInfo(
        kind=c.EDGE_MODEL,
        plural=c.EDGE_MODELS,
        short_names=c.SHORT_NAMES[c.EDGE_MODEL],
        spec=EdgeModelSpec,
        status=EdgeModelStatus,
        description="A model line: how to train it, the devices it targets, the gates a new "
        "version must pass, when to retrain and how to promote. Status is the registry.",
        columns=(
            READY,
            PrinterColumn("Current", ".status.currentVersion", "integer", "Version in the fleet"),
            PrinterColumn(
                "Candidate", ".status.candidateVersion", "integer", "Version awaiting rollout"
            ),
            PrinterColumn(
                "Promotion", ".spec.promotion.mode", "string", "Manual or Auto", priority=1
            ),
            PrinterColumn(
                "Dataset", ".spec.training.datasetRef.name", "string", "Dataset", priority=1
            ),
            PrinterColumn(
                "LastRun", ".status.lastTrainingRun", "string", "Latest TrainingRun", priority=1
            ),
            REASON,
            AGE,
        ),
        name_max_length=c.EDGE_MODEL_NAME_MAX,
    ),
    KindInfo(
        kind=c.FLEET_ROLLOUT,
        plural=c.FLEET_ROLLOUTS,
        short_names=c.SHORT_NAMES[c.FLEET_ROLLOUT],
        spec=FleetRolloutSpec,
        status=FleetRolloutStatus,
        description="Moves the devices matched by a selector to one EdgeModel version in "
        "steps, with analysis between steps and automatic abort and rollback.",
        columns=(
            READY,
            PrinterColumn("Phase", ".status.phase", "string", "Rollout phase"),
            PrinterColumn("Model", ".spec.modelRef.name", "string", "EdgeModel"),
            PrinterColumn("Version", ".spec.version", "integer", "Target version"),
            PrinterColumn("Percent", ".status.currentPercent", "integer", "Devices targeted %"),
            PrinterColumn("Step", ".status.currentStep", "integer", "Current step", priority=1),
            PrinterColumn(
                "Updated", ".status.counts.updated", "integer", "Updated devices", priority=1
            ),
            PrinterColumn(
                "Failed", ".status.counts.failed", "integer", "Failed devices", priority=1
            ),
            REASON,
            AGE,
        ),
    ),
    KindInfo(
        kind=c.DEVICE,
        plural=c.DEVICES,
        short_names=c.SHORT_NAMES[c.DEVICE],
        spec=DeviceSpec,
        status=DeviceStatus,
        description="One edge device: target type, hardware and public identity; status is "
        "what it runs and its health.",
        columns=(
            READY,
            PrinterColumn(
                "Enrollment", ".status.enrollment", "string", "Pending, Approved, Rejected, Revoked"
            ),
            PrinterColumn("Type", ".spec.targetType", "string", "linux or mcu"),
            PrinterColumn("Model", ".status.model", "string", "EdgeModel running"),
            PrinterColumn("Version", ".status.version", "integer", "Version running"),
            PrinterColumn("Health", ".status.health", "string", "Reported health"),
            PrinterColumn("LastSeen", ".status.lastSeen", "date", "Last contact"),
            PrinterColumn("Hardware", ".spec.hardware", "string", "Hardware", priority=1),
            PrinterColumn("Site", ".spec.site", "string", "Site", priority=1),
            PrinterColumn("Agent", ".status.agentVersion", "string", "Agent", priority=1),
            REASON,
            AGE,
        ),
    ),
)

KINDS_BY_NAME: dict[str, KindInfo] = {k.kind: k for k in KINDS}
