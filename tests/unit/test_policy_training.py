"""TrainingRun decisions: Job manifest, code version, phase from Job and pod state."""

from __future__ import annotations

from typing import Any

from edgeops.api.trainingrun import TrainingRunSpec
from edgeops.policy import training as policy

RUN = {"metadata": {"name": "r1", "uid": "uid-1"}}
SPEC = TrainingRunSpec.model_validate(
    {
        "datasetRef": {"name": "ds"},
        "trainer": {
            "hyperparameters": {"epochs": 5},
            "config": {"width": 16},
            "resources": {"limits": {"cpu": 2, "memory": "1Gi"}},
        },
        "exports": ["onnx", "tflm"],
        "backoffLimit": 2,
        "activeDeadlineSeconds": 600,
        "modelRef": {"name": "m"},
    }
)


def test_job_is_deterministic_owned_and_carries_spec_limits() -> None:
    job = policy.job(RUN, SPEC, "ghcr.io/edgeops/trainer:1", "http://s3:9000", "bkt")
    assert job["metadata"]["name"] == "r1-train" == policy.job_name("r1")
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("TrainingRun", "uid-1", True)
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["activeDeadlineSeconds"] == 600
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["resources"] == {"limits": {"cpu": "2", "memory": "1Gi"}}
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    # The run's own Secret of scoped credentials, never a shared name a user might own.
    for variable, key in (
        ("EDGEOPS_S3_ACCESS_KEY", "accessKey"),
        ("EDGEOPS_S3_SECRET_KEY", "secretKey"),
        ("EDGEOPS_S3_SESSION_TOKEN", "sessionToken"),
    ):
        ref = env[variable]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "r1-train-s3", "key": key}, variable
    assert policy.s3_secret_name("r1") == "r1-train-s3"
    assert job["metadata"]["labels"]["edgeops.dev/model"] == "m"
    assert job == policy.job(RUN, SPEC, "ghcr.io/edgeops/trainer:1", "http://s3:9000", "bkt")


def test_trainer_and_evaluator_pods_are_restricted_and_write_only_to_scratch() -> None:
    config = policy.evaluation_config("ns", "r1", "uid-1", SPEC, "a" * 64, [])
    for job in (
        policy.job(RUN, SPEC, "img", "http://s3", "b"),
        policy.evaluation_job(
            {"metadata": {**RUN["metadata"], "namespace": "ns"}}, config, "img", "http://s3", "b"
        ),
    ):
        pod = job["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        scratch = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        volume = next(v for v in pod["volumes"] if v["name"] == scratch["name"])
        assert "emptyDir" in volume


def test_config_hash_changes_with_config_not_with_dataset() -> None:
    base = policy.config_hash(SPEC)
    other_data = SPEC.model_copy(
        update={"dataset_ref": SPEC.dataset_ref.model_copy(update={"name": "other"})}
    )
    assert policy.config_hash(other_data) == base
    changed = SPEC.model_copy(deep=True)
    changed.trainer.config = {"width": 32}
    assert policy.config_hash(changed) != base


def _job(conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "r1-train"},
        "spec": {"backoffLimit": 1, "activeDeadlineSeconds": 9},
        "status": {"conditions": conditions or [], **status},
    }


def _pod(phase: str, waiting: str | None = None, exit_code: int | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if waiting:
        state = {"waiting": {"reason": waiting, "message": "why"}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code}}
    return {
        "metadata": {"name": "p", "creationTimestamp": "t"},
        "status": {"phase": phase, "containerStatuses": [{"state": state}]},
    }


def test_job_states() -> None:
    assert policy.job_state(None, []).phase == "Pending"
    running = policy.job_state(_job(active=1), [_pod("Running")])
    assert (running.phase, running.reason) == ("Running", "JobRunning")
    stuck = policy.job_state(_job(active=1), [_pod("Pending", waiting="ImageNotRunnableLocally")])
    assert (stuck.phase, stuck.reason) == ("Pending", "ImageNotRunnableLocally")
    between = policy.job_state(_job(), [_pod("Succeeded", exit_code=0)])
    assert between.phase == "Running"  # never back to Pending once a pod has run
    done = policy.job_state(_job([{"type": "Complete", "status": "True"}]), [])
    assert done.phase == "Succeeded" and done.finished
    deadline = policy.job_state(
        _job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]), []
    )
    assert deadline.reason == "DeadlineExceeded" and "activeDeadlineSeconds=9" in deadline.message
    backoff = policy.job_state(
        _job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}], failed=2),
        [_pod("Failed", exit_code=2), _pod("Failed", exit_code=2)],
    )
    assert backoff.reason == "BackoffLimitExceeded"
    assert (
        "2 attempt(s) (backoffLimit=1)" in backoff.message and "exit codes 2, 2" in backoff.message
    )
