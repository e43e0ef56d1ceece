"""TrainingRun decisions: the Job to create, the code version, the phase a Job implies."""

from __future__ import annotations

import base64
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
from edgeops.api.trainingrun import FINISHED_PHASES, TrainingRunSpec
from edgeops.canonical_json import sorted_json

CONFIG_MOUNT = "/etc/edgeops/training"
CONFIG_KEY = "config.json"
#: Keys of a run's credentials Secret (``s3_secret_name``).
ACCESS_KEY: Final = "accessKey"
SECRET_KEY: Final = "secretKey"
SESSION_TOKEN: Final = "sessionToken"
#: Annotation on the credentials Secret: when its credentials expire (RFC 3339, UTC).
EXPIRES_ANNOTATION: Final = "edgeops.dev/credentials-expire-at"
# Pod waiting reasons that will not fix themselves: the run reports them as its reason.
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
    """The JSON document the trainer reads (mounted from the run's ConfigMap)."""
    hp = spec.trainer.hyperparameters.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {
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
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": s3_secret_name(run["metadata"]["name"]),
            "labels": _labels(run, spec),
            "annotations": {EXPIRES_ANNOTATION: expires},
            "ownerReferences": [owner_reference(run)],
        },
        "type": "Opaque",
        "data": {
            key: base64.b64encode(credentials[key].encode()).decode()
            for key in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
        },
    }


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
    the same name and S3 credentials from the run's own Secret (``s3_secret_name``)."""
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
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}],
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
                "containers": [container],
                "volumes": [{"name": "config", "configMap": {"name": name}}],
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
