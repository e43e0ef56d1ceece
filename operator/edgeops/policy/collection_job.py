"""Dataset collection Jobs: the Job to create, its name, what its state says.

A collection (list the sources, read and clean the rows, write shards, profile, version
info, manifest, index) runs in a batch/v1 Job, never in the operator: the operator's memory
and latency do not depend on the data. The patterns are the training Job's
(`edgeops.policy.training`): EdgeOps's trainer image, owned by the Dataset, a deterministic
name, scoped short-lived S3 credentials in a Secret the Dataset owns, the Pod Security
Standard ``restricted``, ``activeDeadlineSeconds`` and ``backoffLimit`` from
``spec.collection``.

The collector reports on its last log line (:data:`MARKER` + a JSON object): the
collection's result, or the error it understood (exit code :data:`EXIT_REPORTED`, which
fails the Job at once through its ``podFailurePolicy``: the operator retries with its own
backoff). Any other exit (a crash, a killed or deleted pod) is retried by the Job itself
up to ``backoffLimit``. Nothing the Job did not finish is visible: a version exists once
its manifest does, and the manifest is written last (`edgeops.datasets.ingest`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

from edgeops.api.constants import API_VERSION, DATASET, Labels, Reason
from edgeops.api.dataset import Collection, DatasetSpec
from edgeops.policy import credentials as credentials_policy

from .training import (
    ACCESS_KEY,
    SCRATCH_MOUNT,
    SECRET_KEY,
    SESSION_TOKEN,
    restricted_container_security,
    restricted_pod_security,
)

#: The collector's entrypoint in EdgeOps's trainer image.
COMMAND: Final = ("python", "-m", "edgeops.datasets")
CONTAINER: Final = "collector"
#: Prefix of the collector's last log line, followed by a JSON object:
#: ``{"result": {...}}`` or ``{"error": {"kind", "reason", "message"}}``.
MARKER: Final = "EDGEOPS_COLLECTION "
#: The collector's exit code for a failure it reported on its marker line: the Job fails
#: at once (no pod retry helps an unreachable source or a bad file).
EXIT_REPORTED: Final = 2
#: Failed collection Jobs are removed this long after they finish (their pods' logs say
#: why); the operator deletes a Job that succeeded as soon as status records it.
TTL_SECONDS: Final = 600
#: Annotation on a collection Job: the Dataset generation it collects for.
GENERATION_ANNOTATION: Final = "edgeops.dev/dataset-generation"
#: Kubernetes label values (the Job controller's ``job-name`` label) are at most 63 chars.
MAX_NAME: Final = 63


def _short(name: str, suffix: str) -> str:
    """``name + suffix`` within :data:`MAX_NAME`: a long name is cut and made unique
    again with 8 hex digits of its SHA-256."""
    if len(name) + len(suffix) <= MAX_NAME:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = MAX_NAME - len(suffix) - len(digest) - 1
    return f"{name[:keep].rstrip('-.')}-{digest}{suffix}"


def job_name(dataset: str, number: int) -> str:
    """The ``number``-th collection Job of a Dataset: deterministic, so a restarted
    operator that lost its status write finds (adopts) the Job instead of creating one."""
    return _short(dataset, f"-collect-{number}")


def s3_secret_name(dataset: str) -> str:
    """The Dataset's collection credentials Secret (re-issued for every collection Job)."""
    return _short(dataset, "-collect-s3")


def settings_of(spec: DatasetSpec) -> Collection:
    """``spec.collection`` with its defaults when absent."""
    return spec.collection or Collection()


def owner_reference(dataset: dict[str, Any]) -> dict[str, Any]:
    meta = dataset["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": DATASET,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(dataset: str, number: int | None = None) -> dict[str, str]:
    found = {
        Labels.MANAGED_BY: Labels.MANAGED_BY_VALUE,
        Labels.DATASET: dataset,
        Labels.JOB_ROLE: Labels.JOB_ROLE_COLLECT,
    }
    if number is not None:
        found[Labels.COLLECTION] = str(number)
    return found


def collection_config(
    namespace: str,
    name: str,
    spec: dict[str, Any],
    now: str,
    *,
    ingest_delay_seconds: float = 0.0,
) -> dict[str, Any]:
    """What the collector reads (``edgeops.datasets.job``): the Dataset, its spec as the
    operator validated it, the collection time (RFC 3339, the version's ``created``) and
    the test hook's pause between the data and the manifest writes."""
    return {
        "dataset": {"namespace": namespace, "name": name},
        "spec": spec,
        "now": now,
        "ingestDelaySeconds": ingest_delay_seconds,
    }


def credentials_secret(
    dataset: dict[str, Any], credentials: dict[str, str], expires: str
) -> dict[str, Any]:
    """The collection credentials Secret, owned by the Dataset. ``credentials`` has keys
    ACCESS_KEY, SECRET_KEY and SESSION_TOKEN; ``expires`` is RFC 3339."""
    name = dataset["metadata"]["name"]
    return credentials_policy.secret(
        s3_secret_name(name),
        labels(name),
        owner_reference(dataset),
        {key: credentials[key] for key in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)},
        expires,
    )


def job(
    dataset: dict[str, Any],
    spec: DatasetSpec,
    number: int,
    config: dict[str, Any],
    image: str,
    env: dict[str, str],
) -> dict[str, Any]:
    """The ``number``-th collection Job of ``dataset`` (``{"metadata": {name, uid,
    generation}}``). ``env`` holds the operator settings the collector must share (S3
    endpoint and bucket, source limits, the HTTP address policy), as ``EDGEOPS_*``
    variables; the S3 keys come from the Dataset's own Secret (:func:`s3_secret_name`)."""
    meta = dataset["metadata"]
    name = meta["name"]
    secret = s3_secret_name(name)
    limits = settings_of(spec)
    job_labels = labels(name, number)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "command": list(COMMAND),
        "args": ["--config-json", json.dumps(config, sort_keys=True, separators=(",", ":"))],
        "env": [
            *({"name": key, "value": value} for key, value in sorted(env.items())),
            *(
                {
                    "name": variable,
                    "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
                }
                for variable, key in (
                    ("EDGEOPS_S3_ACCESS_KEY", ACCESS_KEY),
                    ("EDGEOPS_S3_SECRET_KEY", SECRET_KEY),
                    ("EDGEOPS_S3_SESSION_TOKEN", SESSION_TOKEN),
                )
            ),
        ],
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_MOUNT}],
        "securityContext": restricted_container_security(),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name, number),
            "labels": job_labels,
            "annotations": {GENERATION_ANNOTATION: str(meta.get("generation") or "")},
            "ownerReferences": [owner_reference(dataset)],
        },
        "spec": {
            "backoffLimit": limits.backoff_limit,
            "activeDeadlineSeconds": limits.active_deadline_seconds,
            "ttlSecondsAfterFinished": TTL_SECONDS,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [EXIT_REPORTED],
                        },
                    }
                ]
            },
            "template": {
                "metadata": {"labels": job_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": restricted_pod_security(),
                    "containers": [container],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                },
            },
        },
    }


def number_of(job_obj: dict[str, Any]) -> int:
    """A collection Job's sequence number (its label), 0 when it has none."""
    raw = ((job_obj.get("metadata") or {}).get("labels") or {}).get(Labels.COLLECTION, "")
    return int(raw) if str(raw).isdigit() else 0


def generation_of(job_obj: dict[str, Any]) -> int | None:
    raw = ((job_obj.get("metadata") or {}).get("annotations") or {}).get(GENERATION_ANNOTATION)
    return int(raw) if raw and str(raw).isdigit() else None


@dataclass(frozen=True)
class CollectionState:
    """What a collection Job (and its pods) say: phase (Pending, Running, Succeeded,
    Failed), reason and a message with the numbers."""

    phase: str
    reason: str
    message: str

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def state(job_obj: dict[str, Any], pods: list[dict[str, Any]]) -> CollectionState:
    """The state of a collection Job from its conditions, counters and pods."""
    name = job_obj["metadata"]["name"]
    spec = job_obj.get("spec") or {}
    status = job_obj.get("status") or {}
    failed = int(status.get("failed") or 0)
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return CollectionState("Succeeded", Reason.JOB_SUCCEEDED, f"Job {name} completed")
        if cond.get("type") == "Failed":
            detail = cond.get("message") or cond.get("reason") or ""
            if cond.get("reason") == "DeadlineExceeded":
                return CollectionState(
                    "Failed",
                    Reason.DEADLINE_EXCEEDED,
                    f"collection Job {name} ran longer than activeDeadlineSeconds="
                    f"{spec.get('activeDeadlineSeconds')}; nothing was published: {detail}",
                )
            return CollectionState(
                "Failed",
                Reason.COLLECTION_JOB_FAILED,
                f"collection Job {name} failed after {failed} attempt(s) (backoffLimit="
                f"{spec.get('backoffLimit')}); nothing it did not finish was published: {detail}",
            )
    # A pod that completed, or exited reporting a failure, decides the collection: its
    # report is in its log now, and the Job controller's verdict (a second or so later)
    # cannot change it.
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Succeeded":
            return CollectionState(
                "Succeeded",
                Reason.JOB_SUCCEEDED,
                f"collection pod {pod['metadata']['name']} completed",
            )
        if phase == "Failed" and EXIT_REPORTED in _exit_codes(pod):
            return CollectionState(
                "Failed",
                Reason.COLLECTION_FAILED,
                f"collection pod {pod['metadata']['name']} reported a failure",
            )
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if running:
        return CollectionState(
            "Running",
            Reason.COLLECTING,
            f"collection pod {running[0]['metadata']['name']} is running (attempt {failed + 1} "
            f"of {int(spec.get('backoffLimit') or 0) + 1})",
        )
    if status.get("active") or failed or status.get("succeeded"):
        return CollectionState(
            "Running",
            Reason.COLLECTING,
            f"collection Job {name}: {failed} failed attempt(s), waiting for the next pod or "
            "the Job's verdict",
        )
    return CollectionState(
        "Pending", Reason.JOB_CREATED, f"collection Job {name} created, waiting for its pod"
    )


def _exit_codes(pod: dict[str, Any]) -> set[int]:
    codes = set()
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if isinstance(terminated.get("exitCode"), int):
            codes.add(terminated["exitCode"])
    return codes


def parse_marker(log: str) -> dict[str, Any] | None:
    """The collector's report: its last :data:`MARKER` line as a JSON object, or None."""
    for line in reversed(log.splitlines()):
        if line.startswith(MARKER):
            try:
                found = json.loads(line[len(MARKER) :])
            except ValueError:
                return None
            return found if isinstance(found, dict) else None
    return None
