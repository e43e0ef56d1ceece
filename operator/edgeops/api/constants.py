"""Names shared by the CRDs, the operator, the gateway and the CLI.

Everything here is a plain ``str``/``int``/``tuple`` (not an Enum) so values can be written
straight into Kubernetes objects, YAML and JSON without custom serialisers.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "edgeops.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

#: ``kubectl get edgeops`` lists every EdgeOps object through this category.
CATEGORY: Final = "edgeops"

# Kinds, plurals and short names. Short names are prefixed with "e" so they never clash with
# built-in ones (``ds`` is DaemonSet, ``dev`` is unclaimed today but too generic to own).
DATASET: Final = "Dataset"
TRAINING_RUN: Final = "TrainingRun"
EDGE_MODEL: Final = "EdgeModel"
FLEET_ROLLOUT: Final = "FleetRollout"
DEVICE: Final = "Device"

DATASETS: Final = "datasets"
TRAINING_RUNS: Final = "trainingruns"
EDGE_MODELS: Final = "edgemodels"
FLEET_ROLLOUTS: Final = "fleetrollouts"
DEVICES: Final = "devices"

SHORT_NAMES: Final[dict[str, tuple[str, ...]]] = {
    DATASET: ("eds",),
    TRAINING_RUN: ("etr",),
    EDGE_MODEL: ("edm",),
    FLEET_ROLLOUT: ("efr",),
    DEVICE: ("edev",),
}

# Name length limits. Child objects get deterministic names derived from their owner
# (``<run>-train`` for a Job, ``<model>-<n>`` for TrainingRuns and rollouts), and Job and
# InferenceService names end up in DNS labels (max 63). The CRDs enforce these limits so
# a too-long name is rejected at ``kubectl apply`` time, not half-way through reconciling.
TRAINING_RUN_NAME_MAX: Final = 57  # + "-train" = 63
EDGE_MODEL_NAME_MAX: Final = 40  # leaves room for "-<version>-<suffix>" children

#: Top-level key prefixes the operator and the gateway own in the data bucket: blobs/
#: (content-addressed files), datasets/ (versions and manifests), inbox/ (device uploads,
#: inbox/<namespace>/<dataset>/), models/ (registry and bundles) and runs/ (training
#: results). A Dataset's s3 source must not read under any of them in the operator's
#: bucket: refused at admission without a bucket or with the default name ``edgeops``,
#: and at run time whatever the bucket is called (``edgeops.datasets.layout``).
RESERVED_BUCKET_ROOTS: Final[tuple[str, ...]] = (
    "blobs/",
    "datasets/",
    "inbox/",
    "models/",
    "runs/",
)


class ImageRepositories:
    """Repositories of EdgeOps's own container images (tags are the release version)."""

    OPERATOR: Final = "ghcr.io/edgeops/operator"
    TRAINER: Final = "ghcr.io/edgeops/trainer"
    GATEWAY: Final = "ghcr.io/edgeops/gateway"
    DEVICE_AGENT: Final = "ghcr.io/edgeops/device-agent"
    PREDICTOR: Final = "ghcr.io/edgeops/predictor"


EDGEOPS_IMAGE_REPOSITORIES: Final[tuple[str, ...]] = (
    ImageRepositories.OPERATOR,
    ImageRepositories.TRAINER,
    ImageRepositories.GATEWAY,
    ImageRepositories.DEVICE_AGENT,
    ImageRepositories.PREDICTOR,
)


class Labels:
    """Label keys the operator puts on child objects (selectable with ``kubectl -l``)."""

    MANAGED_BY: Final = "app.kubernetes.io/managed-by"
    MANAGED_BY_VALUE: Final = "edgeops"
    MODEL: Final = f"{GROUP}/model"
    MODEL_VERSION: Final = f"{GROUP}/model-version"
    DATASET: Final = f"{GROUP}/dataset"
    TRAINING_RUN: Final = f"{GROUP}/training-run"
    #: on an evaluation Job (in the operator's namespace): the namespace of its TrainingRun.
    TRAINING_RUN_NAMESPACE: Final = f"{GROUP}/training-run-namespace"
    #: which step of a TrainingRun a Job (and its pods) is: ``train`` or ``evaluate``.
    JOB_ROLE: Final = f"{GROUP}/job-role"
    JOB_ROLE_TRAIN: Final = "train"
    JOB_ROLE_EVALUATE: Final = "evaluate"
    #: a Dataset's collection Job (and its pods): reads the sources, publishes a version.
    JOB_ROLE_COLLECT: Final = "collect"
    #: on a collection Job: its sequence number among the Dataset's collections.
    COLLECTION: Final = f"{GROUP}/collection"
    ROLLOUT: Final = f"{GROUP}/rollout"


class Annotations:
    """Annotations a user (or the ``edgeops`` CLI) sets to ask the operator for something."""

    #: any new value starts a TrainingRun with reason Manual.
    RETRAIN: Final = f"{GROUP}/retrain"
    #: "<version>" or "<version> <nonce>": make that version current (promote or roll back).
    PROMOTE: Final = f"{GROUP}/promote"


class ConditionType:
    """Condition types: adjectives or past tense, positive polarity unless noted."""

    READY: Final = "Ready"
    SUCCEEDED: Final = "Succeeded"
    PROGRESSING: Final = "Progressing"
    #: abnormal-true: something works but not fully (e.g. some data rejected).
    DEGRADED: Final = "Degraded"
    #: abnormal-true: input distribution moved away from the training reference.
    DATA_DRIFT: Final = "DataDrift"
    #: abnormal-true: labelled feedback shows accuracy dropped.
    CONCEPT_DRIFT: Final = "ConceptDrift"
    GATES_PASSED: Final = "GatesPassed"
    PROMOTED: Final = "Promoted"
    SERVING: Final = "Serving"
    HEALTHY: Final = "Healthy"
    #: Dataset: the last collection's rows passed validation (rejects within bounds).
    VALIDATED: Final = "Validated"
    #: The object store answered on the last attempt to use it.
    STORAGE_AVAILABLE: Final = "StorageAvailable"
    #: Device: spec.approval is Approved and the device is not decommissioned.
    ENROLLED: Final = "Enrolled"
    #: Device: the last update the agent reported reached Committed (False: it ended
    #: RolledBack, Failed or TimedOut; Unknown: none yet, or one still in flight).
    UPDATED: Final = "Updated"
    #: FleetRollout, abnormal-true: a newer rollout of the same model governs some of the
    #: devices this one selects; they are not counted here.
    OVERLAPPING: Final = "Overlapping"
    #: EdgeModel: spec.retrain.schedule can be run. Present only while it cannot (False,
    #: InvalidSpec): that one trigger is off, the rest of the model keeps working.
    SCHEDULE_VALID: Final = "ScheduleValid"


class Reason:
    """Condition and Event reasons (CamelCase, as metav1.Condition requires). Every reason
    the operator writes is one of these; the comment says the scenario it names."""

    # generic
    #: not evaluated yet (a condition's first value).
    RECONCILING: Final = "Reconciling"
    #: everything the spec asks for is in place.
    RECONCILED: Final = "Reconciled"
    #: the spec passed the API server but not the operator's models; the message says why.
    INVALID_SPEC: Final = "InvalidSpec"
    # Dataset
    #: a collection published a new version.
    COLLECTED: Final = "Collected"
    #: Event: a new version's manifest was written.
    VERSION_PUBLISHED: Final = "VersionPublished"
    #: Event: some rows of a collection were rejected (counts by reason).
    ROWS_REJECTED: Final = "RowsRejected"
    #: a collection failed for its data or sources (not for S3); retried.
    COLLECTION_FAILED: Final = "CollectionFailed"
    #: Event: a collection Job was created (its name and what it reads are in the message).
    COLLECTION_STARTED: Final = "CollectionStarted"
    #: the collection Job's pod runs (or waits for its verdict / a retry).
    COLLECTING: Final = "Collecting"
    #: the collection Job's pod crashed, was killed or the Job ran over its deadline:
    #: nothing was published (the manifest is written last); a new Job is tried with backoff.
    COLLECTION_JOB_FAILED: Final = "CollectionJobFailed"
    #: Event: retention deleted expired data (counts in the message).
    RETENTION_ENFORCED: Final = "RetentionEnforced"
    #: Event on a Dataset being deleted with deletionPolicy Delete: what was deleted, which
    #: versions were kept and who uses them.
    DATA_DELETED: Final = "DataDeleted"
    #: Event on a Dataset being deleted with deletionPolicy Retain: what stays, and that
    #: retention goes on from its retention record.
    DATA_RETAINED: Final = "DataRetained"
    #: Event: deleting a Dataset's data failed (S3 unreachable); retried with backoff, the
    #: Dataset stays Terminating meanwhile.
    DELETION_RETRYING: Final = "DeletionRetrying"
    NO_NEW_DATA: Final = "NoNewData"
    SOURCE_UNAVAILABLE: Final = "SourceUnavailable"
    #: an HTTP(S) source's host (or a redirect's) is not one sources may use: private,
    #: loopback, link-local or metadata address, or not in the allowed hosts. Refused before
    #: any connection; the message says nothing about what listens there. Also an s3
    #: source whose resolved bucket is the operator's own and whose prefix overlaps a
    #: reserved root (blobs/, datasets/, inbox/, models/, runs/): nothing is read.
    SOURCE_REFUSED: Final = "SourceRefused"
    #: an HTTP(S) download exceeded a configured bound (its size or the fetch deadline); the
    #: message names the setting.
    SOURCE_LIMIT_EXCEEDED: Final = "SourceLimitExceeded"
    VALIDATION_FAILED: Final = "ValidationFailed"
    TOO_MANY_REJECTED: Final = "TooManyRejected"
    ROWS_VALIDATED: Final = "RowsValidated"
    STORAGE_REACHABLE: Final = "StorageReachable"
    STORAGE_UNAVAILABLE: Final = "StorageUnavailable"
    STORAGE_MISCONFIGURED: Final = "StorageMisconfigured"
    STORAGE_REJECTED: Final = "StorageRejected"
    # TrainingRun
    DATASET_NOT_FOUND: Final = "DatasetNotFound"
    DATASET_VERSION_NOT_FOUND: Final = "DatasetVersionNotFound"
    JOB_CREATED: Final = "JobCreated"
    JOB_RUNNING: Final = "JobRunning"
    JOB_SUCCEEDED: Final = "JobSucceeded"
    JOB_FAILED: Final = "JobFailed"
    DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
    #: creating the Job (or its ConfigMap/Secret) failed; retried.
    JOB_CREATE_FAILED: Final = "JobCreateFailed"
    #: the Job was deleted before the run finished and was created again.
    JOB_RECREATED: Final = "JobRecreated"
    #: the Job completed but the trainer's results manifest is missing in S3.
    RESULTS_MISSING: Final = "ResultsMissing"
    #: the training Job completed; EdgeOps's evaluation Job is measuring the exports.
    EVALUATING: Final = "Evaluating"
    #: the evaluation Job finished and the run's metrics are its measurements.
    EVALUATED: Final = "Evaluated"
    #: the evaluation failed: an export is missing, mis-hashed or not a model the runtime
    #: runs, or the evaluator's result is missing or does not match its digest. The run
    #: fails; nothing of it is gated or signed.
    EVALUATION_FAILED: Final = "EvaluationFailed"
    #: a pod of the Job was evicted; the Job retries.
    POD_EVICTED: Final = "PodEvicted"
    #: a child's name is still held by a deleted owner of the same name.
    WAITING_FOR_PREVIOUS_RUN: Final = "WaitingForPreviousRun"
    # EdgeModel
    NO_VERSION: Final = "NoVersion"
    TRAINING: Final = "Training"
    COOLDOWN: Final = "Cooldown"
    AWAITING_NEW_DATA: Final = "AwaitingNewData"
    GATES_PASSED: Final = "GatesPassed"
    GATES_FAILED: Final = "GatesFailed"
    AWAITING_APPROVAL: Final = "AwaitingApproval"
    PROMOTED: Final = "Promoted"
    DRIFT_DETECTED: Final = "DriftDetected"
    NO_DRIFT: Final = "NoDrift"
    INSUFFICIENT_DATA: Final = "InsufficientData"
    #: the drift thresholds of the version's window size are still being simulated off the
    #: reconcile path; the statistics so far are in the message.
    CALIBRATING: Final = "Calibrating"
    #: the drift monitor got no answer (Prometheus unreachable, profile unreadable).
    DRIFT_MEASUREMENT_FAILED: Final = "DriftMeasurementFailed"
    #: onDrift was switched off: DataDrift, ConceptDrift and status.drift are removed.
    DRIFT_MONITORING_DISABLED: Final = "DriftMonitoringDisabled"
    #: the version the fleet runs has no reference profile: data drift cannot be measured.
    NO_REFERENCE_PROFILE: Final = "NoReferenceProfile"
    RETRAIN_TRIGGERED: Final = "RetrainTriggered"
    MAX_CONCURRENT_RUNS: Final = "MaxConcurrentRuns"
    TRAINING_FAILED: Final = "TrainingFailed"
    VERSION_REGISTERED: Final = "VersionRegistered"
    #: a finished run could not be registered (e.g. a target's format was not exported).
    REGISTRATION_FAILED: Final = "RegistrationFailed"
    #: evaluating the retraining triggers or starting the run failed; retried.
    TRIGGER_FAILED: Final = "TriggerFailed"
    #: keeping the InferenceService on the current version failed; retried.
    SERVING_FAILED: Final = "ServingFailed"
    SIGNED: Final = "Signed"
    NOT_PROMOTABLE: Final = "NotPromotable"
    SERVING_DISABLED: Final = "ServingDisabled"
    NO_ONNX_ARTIFACT: Final = "NoOnnxArtifact"
    INFERENCE_SERVICE_APPLIED: Final = "InferenceServiceApplied"
    INFERENCE_SERVICE_READY: Final = "InferenceServiceReady"
    #: a child's name is taken by an object EdgeOps does not own (not controlled by this
    #: owner, or a shared object without app.kubernetes.io/managed-by=edgeops): it is never
    #: adopted, changed or deleted; the owner says so and looks again with backoff.
    NAME_TAKEN: Final = "NameTaken"
    # FleetRollout
    MODEL_NOT_FOUND: Final = "ModelNotFound"
    VERSION_NOT_FOUND: Final = "VersionNotFound"
    STEP_PROGRESSING: Final = "StepProgressing"
    STEP_PAUSED: Final = "StepPaused"
    MANUALLY_PAUSED: Final = "ManuallyPaused"
    ANALYSIS_PASSED: Final = "AnalysisPassed"
    ANALYSIS_FAILED: Final = "AnalysisFailed"
    ANALYSIS_INCONCLUSIVE: Final = "AnalysisInconclusive"
    FAILURE_THRESHOLD_EXCEEDED: Final = "FailureThresholdExceeded"
    PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
    ROLLED_BACK: Final = "RolledBack"
    COMPLETED: Final = "Completed"
    #: Event: the rollout started (stable version chosen) and its first step began.
    ROLLOUT_STARTED: Final = "RolloutStarted"
    #: Event: a step began: its cohort is told to update.
    STEP_STARTED: Final = "StepStarted"
    #: Event: a step reached its success threshold.
    STEP_COMPLETED: Final = "StepCompleted"
    #: waiting after a completed step: pause duration, manual approval, analysis or bake.
    STEP_WAITING: Final = "StepWaiting"
    #: the rollout was aborted (spec.abort, or onFailure Abort); terminal.
    ABORTED: Final = "Aborted"
    #: analysis measurements were Error (Prometheus failed) beyond errorLimit: paused.
    ANALYSIS_ERROR: Final = "AnalysisError"
    #: Event: an automatic pause was left through spec.acknowledgedPause.
    PAUSE_ACKNOWLEDGED: Final = "PauseAcknowledged"
    #: Event (Warning): spec.acknowledgedPause matches no pause; the message names the
    #: current pause id.
    ACKNOWLEDGEMENT_IGNORED: Final = "AcknowledgementIgnored"
    #: Event: spec.paused went back to false.
    RESUMED: Final = "Resumed"
    #: Overlapping False: no newer rollout of the model governs the devices this one selects.
    NO_OVERLAP: Final = "NoOverlap"
    #: Overlapping True: some selected devices are governed by a newer rollout.
    OVERLAPPING: Final = "Overlapping"
    #: EdgeModel: spec.retrain.schedule can be run. Present only while it cannot (False,
    #: InvalidSpec): that one trigger is off, the rest of the model keeps working.
    SCHEDULE_VALID: Final = "ScheduleValid"
    #: EdgeModel Event: a FleetRollout of the model succeeded; status.fleetVersion moved.
    FLEET_UPDATED: Final = "FleetUpdated"
    #: EdgeModel Event: the rollout status.fleetRollout named was deleted; the record moved
    #: to the newest remaining Succeeded rollout, or was cleared.
    FLEET_RECORD_CLEARED: Final = "FleetRecordCleared"
    #: FleetRollout Event: a rollout was deleted; where the devices it governed went.
    DEVICES_HANDED_OVER: Final = "DevicesHandedOver"
    # Device
    #: Ready: approved, seen within the staleness threshold, health Healthy.
    HEALTHY: Final = "Healthy"
    #: Ready (True): approved and seen, the agent reports Degraded.
    DEGRADED: Final = "Degraded"
    #: Ready (False): approved and seen, the agent reports Unhealthy.
    UNHEALTHY: Final = "Unhealthy"
    #: Ready (Unknown): approved and seen, but no health reported (or Unknown).
    HEALTH_NOT_REPORTED: Final = "HealthNotReported"
    #: Ready (Unknown): last seen longer ago than 3 report intervals; health is Unknown.
    NOT_SEEN: Final = "NotSeen"
    #: Ready (Unknown): approved, but the device never reported (no status.lastSeen).
    NEVER_SEEN: Final = "NeverSeen"
    #: Enrolled True, and its Event: spec.approval is Approved.
    APPROVED: Final = "Approved"
    #: Ready/Enrolled False: spec.approval is Pending.
    ENROLLMENT_PENDING: Final = "EnrollmentPending"
    #: Ready/Enrolled False, and its Event: spec.approval is Rejected.
    ENROLLMENT_REJECTED: Final = "EnrollmentRejected"
    #: Ready/Enrolled False, and its Event: spec.decommissioned revoked the device.
    DECOMMISSIONED: Final = "Decommissioned"
    #: Updated Unknown: the agent has reported no update yet.
    NO_UPDATE: Final = "NoUpdate"
    #: Updated Unknown: an update is downloading, verifying, installing or health-checking.
    UPDATE_IN_PROGRESS: Final = "UpdateInProgress"
    #: Updated, and an Event for each terminal update phase the agent reports.
    UPDATE_COMMITTED: Final = "UpdateCommitted"
    UPDATE_ROLLED_BACK: Final = "UpdateRolledBack"
    UPDATE_FAILED: Final = "UpdateFailed"
    UPDATE_TIMED_OUT: Final = "UpdateTimedOut"
