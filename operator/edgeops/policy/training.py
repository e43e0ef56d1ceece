"""TrainingRun decisions: the Job to create, the code version, the phase a Job implies."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

from edgeops.api.conditions import Verdict
from edgeops.api.constants import (
    API_VERSION,
    TRAINING_RUN,
    ConditionType,
    ImageRepositories,
    Labels,
    Reason,
)
from edgeops.api.trainingrun import FINISHED_PHASES, FieldDataUsed, TrainingRunSpec
from edgeops.canonical_json import sorted_json
from edgeops.policy import credentials as credentials_policy

CONFIG_MOUNT = "/etc/edgeops/training"
CONFIG_KEY = "config.json"
#: Keys of a run's credentials Secret (``s3_secret_name``).
ACCESS_KEY: Final = "accessKey"
SECRET_KEY: Final = "secretKey"
SESSION_TOKEN: Final = "sessionToken"
#: Annotation on the credentials Secret: when its credentials expire (RFC 3339, UTC).
#: Secret in the operator's namespace with the S3 credentials of evaluation Jobs.
EVALUATOR_S3_SECRET = "edgeops-evaluator-s3"
#: The evaluator's entrypoint in EdgeOps's trainer image.
EVALUATOR_COMMAND = ("python", "-m", "edgeops.training.evaluate")
#: Prefix of the evaluator's last log line, followed by a JSON object: ``{"sha256": ...}``
#: of the evaluation document, or ``{"error": ...}``.
EVALUATION_MARKER = "EDGEOPS_EVALUATION "
#: Limits of an evaluation Job: one retry (S3 may blip), half an hour, and an hour before
#: the finished Job is garbage-collected (the operator reads it as soon as it finishes).
EVALUATION_BACKOFF_LIMIT = 1
#: The evaluator's exit code for exports that cannot be evaluated (no retry helps).
EVALUATION_EXIT_INVALID = 2
EVALUATION_DEADLINE_SECONDS = 1800
EVALUATION_TTL_SECONDS = 3600
# Pod waiting reasons that will not fix themselves: the run reports them as its reason.
#: The user and group trainer and evaluator pods run as (the "nonroot" user of distroless
#: images; any non-zero id works for images that make their files world-readable).
POD_USER_ID: Final = 65532
#: Where pods may write: an emptyDir, since the root filesystem is read-only.
SCRATCH_MOUNT: Final = "/tmp"


def restricted_pod_security() -> dict[str, Any]:
    """The pod-level ``securityContext`` of trainer and evaluator pods: non-root with a
    fixed id, and the runtime's default seccomp profile. Together with
    :func:`restricted_container_security` the pod satisfies the Pod Security Standard
    ``restricted`` (https://kubernetes.io/docs/concepts/security/pod-security-standards/),
    so the Jobs run in namespaces that enforce it."""
    return {
        "runAsNonRoot": True,
        "runAsUser": POD_USER_ID,
        "runAsGroup": POD_USER_ID,
        "fsGroup": POD_USER_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security() -> dict[str, Any]:
    """The container-level ``securityContext``: no privilege escalation, no Linux
    capabilities, a read-only root filesystem (writes go to :data:`SCRATCH_MOUNT`)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _scratch_volume() -> dict[str, Any]:
    return {"name": "scratch", "emptyDir": {}}


def _scratch_mount() -> dict[str, Any]:
    return {"name": "scratch", "mountPath": SCRATCH_MOUNT}


_STUCK_REASONS = {
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ImageNotRunnableLocally",
    "CreateContainerConfigError",
    "CreateContainerError",
    "VolumeTypeUnsupported",
}


def job_name(run_name: str) -> str:
    """Deterministic, so a restarted operator finds the Job instead of creating another."""
    return f"{run_name}-train"


def s3_secret_name(run_name: str) -> str:
    """The run's own credentials Secret: scoped, short-lived S3 credentials for its pod
    (never the operator's keys, never a name shared with anything a user owns)."""
    return f"{job_name(run_name)}-s3"


def results_prefix(namespace: str, run_name: str, run_uid: str) -> str:
    return f"runs/{namespace}/{run_name}/{run_uid}"


def evaluation_job_name(run_uid: str) -> str:
    """The evaluation Job's name in the operator's namespace: deterministic (a restarted
    operator finds it) and unique across tenant namespaces (the run's UID)."""
    return f"edgeops-eval-{run_uid}"


def trainer_image(spec: TrainingRunSpec, default_tag: str) -> str:
    return spec.trainer.image or f"{ImageRepositories.TRAINER}:{default_tag}"


def config_hash(spec: TrainingRunSpec) -> str:
    """SHA-256 of the canonical JSON of what, besides the image, decides the trained code."""
    trainer = spec.trainer
    document = {
        "command": trainer.command,
        "args": trainer.args,
        "config": trainer.config,
        "hyperparameters": trainer.hyperparameters.model_dump(by_alias=True, mode="json"),
        "exports": sorted(spec.exports),
    }
    # ASCII-escaped sorted JSON, as the hashes already in TrainingRun status were computed.
    return hashlib.sha256(sorted_json(document, ensure_ascii=True)).hexdigest()


def trainer_config(
    namespace: str,
    run_name: str,
    run_uid: str,
    spec: TrainingRunSpec,
    dataset_version: str,
    slice_columns: list[str],
) -> dict[str, Any]:
    """The JSON document the trainer reads (mounted from the run's ConfigMap); a run for
    drift carries its ``fieldData`` (:mod:`edgeops.training.selection`)."""
    hp = spec.trainer.hyperparameters.model_dump(by_alias=True, exclude_none=True, mode="json")
    document: dict[str, Any] = {
        "run": {"namespace": namespace, "name": run_name, "uid": run_uid},
        "dataset": {
            "namespace": namespace,
            "name": spec.dataset_ref.name,
            "version": dataset_version,
        },
        "hyperparameters": hp,
        "config": spec.trainer.config or {},
        "exports": list(spec.exports),
        "sliceColumns": slice_columns,
        "output": {"prefix": results_prefix(namespace, run_name, run_uid)},
    }
    if spec.field_data is not None:
        document["fieldData"] = spec.field_data.model_dump(
            by_alias=True, exclude_none=True, mode="json"
        )
    return document


def owner_reference(run: dict[str, Any]) -> dict[str, Any]:
    meta = run["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": TRAINING_RUN,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _labels(run: dict[str, Any], spec: TrainingRunSpec) -> dict[str, str]:
    labels = {
        Labels.MANAGED_BY: Labels.MANAGED_BY_VALUE,
        Labels.TRAINING_RUN: run["metadata"]["name"],
        Labels.DATASET: spec.dataset_ref.name,
        Labels.JOB_ROLE: Labels.JOB_ROLE_TRAIN,
    }
    if spec.model_ref is not None:
        labels[Labels.MODEL] = spec.model_ref.name
    return labels


def credentials_secret(
    run: dict[str, Any],
    spec: TrainingRunSpec,
    credentials: dict[str, str],
    expires: str,
) -> dict[str, Any]:
    """The run's credentials Secret (``stringData``-free: values base64-encoded here), owned
    by the run. ``credentials`` has keys ACCESS_KEY, SECRET_KEY and SESSION_TOKEN;
    ``expires`` is when they stop working (RFC 3339)."""
    return credentials_policy.secret(
        s3_secret_name(run["metadata"]["name"]),
        _labels(run, spec),
        owner_reference(run),
        {key: credentials[key] for key in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)},
        expires,
    )


def config_map(
    run: dict[str, Any], spec: TrainingRunSpec, config: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": job_name(run["metadata"]["name"]),
            "labels": _labels(run, spec),
            "ownerReferences": [owner_reference(run)],
        },
        "data": {CONFIG_KEY: json.dumps(config, indent=2, sort_keys=True)},
    }


def job(
    run: dict[str, Any],
    spec: TrainingRunSpec,
    image: str,
    s3_endpoint: str,
    s3_bucket: str,
) -> dict[str, Any]:
    """The run's batch/v1 Job: the trainer with its config mounted from the ConfigMap of
    the same name and S3 credentials from the run's own Secret (``s3_secret_name``), under
    the Pod Security Standard ``restricted`` (:func:`restricted_pod_security`), writing
    only to an emptyDir at :data:`SCRATCH_MOUNT`."""
    name = job_name(run["metadata"]["name"])
    s3_secret = s3_secret_name(run["metadata"]["name"])
    labels = _labels(run, spec)
    container: dict[str, Any] = {
        "name": "trainer",
        "image": image,
        "args": [f"--config={CONFIG_MOUNT}/{CONFIG_KEY}", *(spec.trainer.args or [])],
        "env": [
            {"name": "EDGEOPS_S3_ENDPOINT", "value": s3_endpoint},
            {"name": "EDGEOPS_S3_BUCKET", "value": s3_bucket},
            {
                "name": "EDGEOPS_S3_ACCESS_KEY",
                "valueFrom": {"secretKeyRef": {"name": s3_secret, "key": ACCESS_KEY}},
            },
            {
                "name": "EDGEOPS_S3_SECRET_KEY",
                "valueFrom": {"secretKeyRef": {"name": s3_secret, "key": SECRET_KEY}},
            },
            {
                "name": "EDGEOPS_S3_SESSION_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": s3_secret, "key": SESSION_TOKEN}},
            },
            {"name": "EDGEOPS_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            _scratch_mount(),
        ],
        "securityContext": restricted_container_security(),
    }
    if spec.trainer.command:
        container["command"] = list(spec.trainer.command)
    if spec.trainer.resources is not None:
        resources = spec.trainer.resources.model_dump(by_alias=True, exclude_none=True, mode="json")
        # Quantities may be written as numbers (cpu: 2); the Pod API takes their string form.
        container["resources"] = {
            kind: {name: str(value) for name, value in amounts.items()}
            for kind, amounts in resources.items()
        }
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": restricted_pod_security(),
                "containers": [container],
                "volumes": [{"name": "config", "configMap": {"name": name}}, _scratch_volume()],
            },
        },
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels, "ownerReferences": [owner_reference(run)]},
        "spec": job_spec,
    }


def evaluation_config(
    namespace: str,
    run_name: str,
    run_uid: str,
    spec: TrainingRunSpec,
    dataset_version: str,
    slice_columns: list[str],
) -> dict[str, Any]:
    """What the evaluator reads (``edgeops.training.evaluate``): the run, the dataset
    version and slices the operator resolved, the exports the spec asks for, the trainer's
    results manifest and where to write."""
    prefix = results_prefix(namespace, run_name, run_uid)
    return {
        "run": {"namespace": namespace, "name": run_name, "uid": run_uid},
        "dataset": {
            "namespace": namespace,
            "name": spec.dataset_ref.name,
            "version": dataset_version,
        },
        "exports": sorted(spec.exports),
        "sliceColumns": slice_columns,
        "results": f"{prefix}/results.json",
        "output": {"prefix": prefix},
    }


def evaluation_job(
    run: dict[str, Any],
    config: dict[str, Any],
    image: str,
    s3_endpoint: str,
    s3_bucket: str,
    s3_secret: str = EVALUATOR_S3_SECRET,
) -> dict[str, Any]:
    """The evaluation Job of a run, to create in the operator's namespace.

    ``run``: ``{"metadata": {"name", "namespace", "uid"}}``; ``config``: from
    :func:`evaluation_config`; ``image``: EdgeOps's own trainer image (never the run's
    ``spec.trainer.image``). Not owned by the run (an owner reference cannot cross
    namespaces): labelled with the run's name and namespace, and collected
    :data:`EVALUATION_TTL_SECONDS` after it finishes."""
    meta = run["metadata"]
    labels = {
        Labels.MANAGED_BY: Labels.MANAGED_BY_VALUE,
        Labels.TRAINING_RUN: meta["name"],
        Labels.TRAINING_RUN_NAMESPACE: meta["namespace"],
        Labels.JOB_ROLE: Labels.JOB_ROLE_EVALUATE,
    }
    container: dict[str, Any] = {
        "name": "evaluator",
        "image": image,
        "command": list(EVALUATOR_COMMAND),
        "args": ["--config-json", json.dumps(config, sort_keys=True, separators=(",", ":"))],
        "env": [
            {"name": "EDGEOPS_S3_ENDPOINT", "value": s3_endpoint},
            {"name": "EDGEOPS_S3_BUCKET", "value": s3_bucket},
            {
                "name": "EDGEOPS_S3_ACCESS_KEY",
                "valueFrom": {"secretKeyRef": {"name": s3_secret, "key": "accessKey"}},
            },
            {
                "name": "EDGEOPS_S3_SECRET_KEY",
                "valueFrom": {"secretKeyRef": {"name": s3_secret, "key": "secretKey"}},
            },
        ],
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
        "volumeMounts": [_scratch_mount()],
        "securityContext": restricted_container_security(),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": evaluation_job_name(meta["uid"]), "labels": labels},
        "spec": {
            "backoffLimit": EVALUATION_BACKOFF_LIMIT,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "evaluator",
                            "operator": "In",
                            "values": [EVALUATION_EXIT_INVALID],
                        },
                    }
                ]
            },
            "activeDeadlineSeconds": EVALUATION_DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": EVALUATION_TTL_SECONDS,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": restricted_pod_security(),
                    "containers": [container],
                    "volumes": [_scratch_volume()],
                },
            },
        },
    }


def evaluation_state(job_obj: dict[str, Any], pods: list[dict[str, Any]]) -> JobState:
    """What the evaluation Job says: Running/Evaluating until it finishes, then
    ``Succeeded`` (read the result) or ``Failed`` with :data:`Reason.EVALUATION_FAILED`."""
    state = job_state(job_obj, pods)
    name = job_obj["metadata"]["name"]
    if state.phase == "Succeeded":
        return JobState("Succeeded", Reason.EVALUATED, f"evaluation Job {name} completed")
    if state.phase == "Failed":
        detail = state.message.replace("training Job", "evaluation Job")
        return JobState("Failed", Reason.EVALUATION_FAILED, detail)
    return JobState(
        "Running",
        Reason.EVALUATING,
        f"training Job completed; EdgeOps's evaluation Job {name} is measuring the exports "
        "on the dataset version's test split",
    )


def parse_evaluation_marker(log: str) -> dict[str, Any] | None:
    """The evaluator's verdict from its log: the last :data:`EVALUATION_MARKER` line as a
    JSON object, or None when there is none (or it is not an object)."""
    for line in reversed(log.splitlines()):
        if line.startswith(EVALUATION_MARKER):
            try:
                found = json.loads(line[len(EVALUATION_MARKER) :])
            except ValueError:
                return None
            return found if isinstance(found, dict) else None
    return None


@dataclass(frozen=True)
class JobState:
    """What a Job (and its pods) say about the run: phase, reason and a message."""

    phase: str
    reason: str
    message: str

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES


def run_verdicts(state: JobState) -> dict[str, Verdict]:
    """The TrainingRun's conditions for a Job state: Ready only once Succeeded, Succeeded
    True/False once finished (Unknown before), and StorageAvailable True once finished
    (the results or the failure report were just read from S3)."""
    ready = "True" if state.phase == "Succeeded" else "False"
    succeeded = {"Succeeded": "True", "Failed": "False"}.get(state.phase, "Unknown")
    verdicts = {
        ConditionType.READY: Verdict(ready, state.reason, state.message),
        ConditionType.SUCCEEDED: Verdict(succeeded, state.reason, state.message),
    }
    if state.finished:
        verdicts[ConditionType.STORAGE_AVAILABLE] = Verdict(
            "True", Reason.STORAGE_REACHABLE, "object store reachable"
        )
    return verdicts


def job_state(job_obj: dict[str, Any] | None, pods: list[dict[str, Any]]) -> JobState:
    if job_obj is None:
        return JobState("Pending", Reason.JOB_CREATED, "waiting for the training Job")
    status = job_obj.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond["type"] == "Complete":
            return JobState("Succeeded", Reason.JOB_SUCCEEDED, "training Job completed")
        if cond["type"] == "Failed":
            reason = cond.get("reason") or Reason.JOB_FAILED
            detail = cond.get("message") or ""
            if reason == "DeadlineExceeded":
                deadline = (job_obj.get("spec") or {}).get("activeDeadlineSeconds")
                return JobState(
                    "Failed",
                    Reason.DEADLINE_EXCEEDED,
                    f"training Job ran longer than activeDeadlineSeconds={deadline}: {detail}",
                )
            failed = status.get("failed", 0)
            limit = (job_obj.get("spec") or {}).get("backoffLimit")
            exit_codes = _exit_codes(pods)
            return JobState(
                "Failed",
                reason,
                f"training Job failed after {failed} attempt(s) (backoffLimit={limit}): "
                f"{detail}{'; exit codes ' + exit_codes if exit_codes else ''}",
            )
    for pod in pods:
        pstatus = pod.get("status") or {}
        if pstatus.get("reason") == "Evicted":
            return JobState(
                "Running",
                Reason.POD_EVICTED,
                f"pod {pod['metadata']['name']} was evicted: "
                f"{pstatus.get('message', '')}; the Job retries",
            )
        for cs in pstatus.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _STUCK_REASONS:
                return JobState("Pending", waiting["reason"], waiting.get("message", ""))
    if status.get("active"):
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        if running:
            return JobState(
                "Running",
                Reason.JOB_RUNNING,
                f"training pod {running[0]['metadata']['name']} is running "
                f"(attempt {status.get('failed', 0) + 1})",
            )
    if (
        status.get("succeeded")
        or status.get("failed")
        or any((p.get("status") or {}).get("phase") in ("Succeeded", "Failed") for p in pods)
    ):
        # Between a pod ending and the Job controller's verdict (or its next retry).
        return JobState(
            "Running", Reason.JOB_RUNNING, "training pod finished; waiting for the Job's verdict"
        )
    return JobState(
        "Pending",
        Reason.JOB_CREATED,
        f"training Job {job_obj['metadata']['name']} created, waiting for its pod to start",
    )


def _exit_codes(pods: list[dict[str, Any]]) -> str:
    codes = []
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if term:
                codes.append(str(term.get("exitCode")))
    return ", ".join(codes)


def field_data_used(spec: TrainingRunSpec, evaluation: dict[str, Any]) -> FieldDataUsed | None:
    """``status.fieldData`` of a finished run for drift: ``spec.fieldData`` (baseline,
    driftSince) with the trainer's summary the evaluator carried over
    (``trainerReported.fieldData``: field rows per split, copies, reference rows). None for
    a run without ``spec.fieldData``; only the spec's part when the summary is missing."""
    if spec.field_data is None:
        return None
    reported = (evaluation.get("trainerReported") or {}).get("fieldData") or {}
    found = reported.get("fieldRows")
    rows: dict[str, int] = found if isinstance(found, dict) else {}
    train_field = rows.get("train")
    copies = reported.get("repeats")
    train_rows = reported.get("trainRows")
    weight = None
    if isinstance(train_field, int) and isinstance(copies, int) and train_rows:
        weight = min(1.0, round(train_field * copies / train_rows, 4))
    return FieldDataUsed(
        baseline_version=spec.field_data.baseline_version,
        drift_since=spec.field_data.drift_since,
        field_rows=sum(rows.values()) if rows else None,
        train_field_rows=train_field,
        copies=copies,
        train_rows=train_rows,
        weight=weight,
        reference_from=reported.get("referenceFrom"),
        reference_rows=reported.get("referenceRows"),
        baseline_missing=bool(reported.get("baselineMissing", False)),
    )


def field_data_message(used: FieldDataUsed) -> str:
    """One sentence for the run's Succeeded Event and condition: why and how much the run
    learnt from field data."""
    head = (
        f"drift since {used.drift_since or '?'}: baseline dataset version "
        f"{used.baseline_version[:12]}"
    )
    if used.baseline_missing:
        return f"{head} was deleted, so the run trained on all rows without field weighting"
    if used.field_rows is None:
        return f"{head} (the trainer reported no field-data summary)"
    text = f"{head}; {used.field_rows} field rows since"
    if used.train_field_rows is not None and used.copies is not None and used.weight is not None:
        text += (
            f", {used.train_field_rows} in train x{used.copies} copies = "
            f"{used.weight:.0%} of {used.train_rows} training rows"
        )
    if used.reference_from is not None:
        text += f", reference profile from {used.reference_rows} {used.reference_from} rows"
    return text
