"""TrainingRun controller: one batch/v1 Job per run, tracked to a phase, results from S3.

``reconcile_trainingrun`` is the run's one reconciler and status writer
(`edgeops.controllers.reconciler`), woken by changes of the run, its Job, the Job's pods
and its Dataset (all read from watch indexes, no API call). It creates the Job (or adopts
the one a previous operator process created), then follows it to a phase. Decisions are in
`edgeops.policy.training`. The Job name is deterministic and the Job is owned by the run,
so deleting a run deletes its Job and pods (artifacts stay in S3: a model version may still
need them).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

import kopf
from pydantic import ValidationError

from edgeops import __version__
from edgeops.api.common import describe_validation_error, format_time
from edgeops.api.conditions import Verdict, Verdicts, get_condition, update_conditions
from edgeops.api.constants import (
    TRAINING_RUN,
    TRAINING_RUNS,
    ConditionType,
    ImageRepositories,
    Labels,
    Reason,
)
from edgeops.api.trainingrun import FINISHED_PHASES, TrainingRunSpec
from edgeops.controllers import events, pod_credentials, reconciler
from edgeops.controllers.storage import artifact_store, describe_store_error
from edgeops.controllers.watches import Key, first, items
from edgeops.datasets import layout
from edgeops.k8s import apply, custom, objects
from edgeops.metrics.operator import RECONCILIATIONS
from edgeops.policy import credentials
from edgeops.policy import training as policy
from edgeops.settings import settings
from edgeops.store import (
    ArtifactStore,
    IntegrityError,
    StorageUnavailableError,
    StoreError,
)
from edgeops.store.artifacts import BLOB_PREFIX, blob_key

STALE_OWNER: Final = Reason.WAITING_FOR_PREVIOUS_RUN
STALE_OWNER_RETRY: Final = 5.0
#: Least seconds before looking again at a child name (Secret, ConfigMap, Job) a user's
#: object holds; the reconciler's backoff grows the wait from there up to 5 minutes.
NAME_TAKEN_RETRY: Final = 30.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _conditions(
    status: dict[str, Any], generation: int | None, verdicts: Verdicts
) -> list[dict[str, Any]]:
    return update_conditions(status.get("conditions"), verdicts, generation, _now())


def _waiting(
    status: dict[str, Any], generation: int | None, reason: str, message: str
) -> list[dict[str, Any]]:
    """Conditions of a run that has not finished and cannot go on yet: Ready False and
    Succeeded Unknown, both with ``reason`` and ``message``."""
    verdict = Verdict("False", reason, message)
    return _conditions(
        status,
        generation,
        {ConditionType.READY: verdict, ConditionType.SUCCEEDED: verdict._replace(status="Unknown")},
    )


def _controlled_by(child: dict[str, Any], run: kopf.Body) -> bool:
    refs = (child.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("controller") and r.get("uid") == run["metadata"]["uid"] for r in refs)


def _trained(current: dict[str, Any], observed: Observed) -> bool:
    """Whether the run's training Job already completed: its evaluation started (the Job
    exists, or Ready says Evaluating)."""
    ready = get_condition(current.get("conditions"), ConditionType.READY) or {}
    return observed.evaluation_job is not None or ready.get("reason") == Reason.EVALUATING


def _completed_job(current: dict[str, Any]) -> dict[str, Any]:
    """What is known of a training Job that completed and is gone: its name, start and
    Complete condition (all a run tracks of it once its evaluation started)."""
    return {
        "metadata": {"name": current.get("jobName")},
        "status": {
            "startTime": current.get("startTime"),
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }


def _finished(status: dict[str, Any] | None, **_: Any) -> bool:
    return (status or {}).get("phase") in FINISHED_PHASES


@dataclass(frozen=True)
class Observed:
    """What a TrainingRun's reconcile reads, from the watch indexes."""

    dataset: dict[str, Any] | None
    job: dict[str, Any] | None
    pods: list[dict[str, Any]] = field(default_factory=list)
    #: the run's evaluation Job (operator's namespace) and its pods, once created.
    evaluation_job: dict[str, Any] | None = None
    evaluation_pods: list[dict[str, Any]] = field(default_factory=list)


def _gather(
    namespace: str,
    name: str,
    body: dict[str, Any],
    datasets: kopf.Index[Key, Any],
    training_jobs: kopf.Index[Key, Any],
    training_pods: kopf.Index[Key, Any],
    evaluation_jobs: kopf.Index[Key, Any],
    evaluation_pods: kopf.Index[Key, Any],
    **_: Any,
) -> Observed:
    dataset = ((body.get("spec") or {}).get("datasetRef") or {}).get("name")
    # A run deleted and created again under its name has another UID, so another Job.
    wanted = policy.evaluation_job_name(str((body.get("metadata") or {}).get("uid")))
    evaluation = [
        j for j in items(evaluation_jobs, (namespace, name)) if j["metadata"]["name"] == wanted
    ]
    pods = [
        p
        for p in items(evaluation_pods, (namespace, name))
        if (p["metadata"].get("labels") or {}).get("job-name") == wanted
    ]
    return Observed(
        dataset=first(datasets, (namespace, str(dataset))),
        job=first(training_jobs, (namespace, name)),
        pods=items(training_pods, (namespace, name)),
        evaluation_job=evaluation[0] if evaluation else None,
        evaluation_pods=pods,
    )


def _name_taken(
    body: kopf.Body, current: dict[str, Any], patch: kopf.Patch, message: str
) -> NoReturn:
    """A child's name (the run's Secret, ConfigMap or Job, its evaluation Job or the
    evaluator's Secret) is held by an object EdgeOps does not own: it is never adopted or
    overwritten. Ready=False and Succeeded=Unknown with reason NameTaken and ``message``, one
    Warning Event per new message, and a retry with backoff (at least
    :data:`NAME_TAKEN_RETRY`), so the run goes on once someone deletes or renames it."""
    patch.status["phase"] = current.get("phase") or "Pending"
    patch.status["conditions"] = _waiting(
        current, body["metadata"].get("generation"), Reason.NAME_TAKEN, message
    )
    was = get_condition(current.get("conditions"), ConditionType.READY) or {}
    if (was.get("reason"), was.get("message")) != (Reason.NAME_TAKEN, message):
        events.warning(body, reason=Reason.NAME_TAKEN, message=message)
    raise kopf.TemporaryError(message, delay=NAME_TAKEN_RETRY)


def _resolve_dataset_version(
    dataset: dict[str, Any] | None,
    namespace: str,
    spec: TrainingRunSpec,
    recorded: str | None = None,
) -> tuple[str, list[str]]:
    """The dataset version to train on and the slice columns; TemporaryError until known.
    A run that already recorded its version (the operator restarted while it trained) keeps
    it: its Job trains that version, whatever the Dataset's latest is now."""
    if dataset is None:
        raise kopf.TemporaryError(
            f"Dataset {spec.dataset_ref.name!r} not found in {namespace}", delay=10
        )
    dstatus = dataset.get("status") or {}
    version = spec.dataset_ref.version or recorded or dstatus.get("latestVersion")
    if not version:
        raise kopf.TemporaryError(f"Dataset {spec.dataset_ref.name!r} has no version yet", delay=5)
    schema = (dataset.get("spec") or {}).get("schema") or {}
    slices = spec.evaluation.slice_columns or schema.get("sliceColumns") or []
    return str(version), list(slices)


def _issue_credentials(
    run: dict[str, Any],
    spec: TrainingRunSpec,
    namespace: str,
    dataset_version: str,
    store: ArtifactStore,
) -> None:
    """Puts scoped, short-lived S3 credentials for the run's pod into the run's own Secret
    (``<run>-train-s3``): they may read the dataset version and blobs and write blobs and
    the run's results, nothing else (`edgeops.policy.credentials`). The operator's keys
    never leave its namespace.

    Raises NameTakenError (a Secret of that name the run does not own is left alone),
    StaleOwnerError (a previous run's Secret awaits garbage collection), StoreError (STS
    refused or is down)."""
    name, uid = run["metadata"]["name"], run["metadata"]["uid"]
    pod_credentials.issue(
        namespace,
        store,
        secret_name=policy.s3_secret_name(name),
        owner=policy.owner_reference(run),
        session_policy=lambda: credentials.training_policy(
            store.bucket,
            layout.version_prefix(namespace, spec.dataset_ref.name, dataset_version),
            BLOB_PREFIX,
            policy.results_prefix(namespace, name, uid),
            layout.version_prefix(
                namespace, spec.dataset_ref.name, spec.field_data.baseline_version
            )
            if spec.field_data is not None
            else None,
        ),
        seconds=credentials.training_seconds(
            spec.active_deadline_seconds, settings().s3_pod_credentials_seconds
        ),
        session_name=f"edgeops-run-{uid}",
        secret=lambda data, expires: policy.credentials_secret(run, spec, data, expires),
    )


def _ensure_job(
    body: kopf.Body,
    spec: TrainingRunSpec,
    namespace: str,
    dataset_version: str,
    slices: list[str],
) -> tuple[dict[str, Any], bool]:
    run = {"metadata": {"name": body["metadata"]["name"], "uid": body["metadata"]["uid"]}}
    store = artifact_store()
    config = store.config
    _issue_credentials(run, spec, namespace, dataset_version, store)
    trainer_config = policy.trainer_config(
        namespace, run["metadata"]["name"], run["metadata"]["uid"], spec, dataset_version, slices
    )
    # The ConfigMap and the Job are what the run trains with: adopted as they are, never
    # changed under a running Job (a Job's pod template is immutable anyway).
    apply.apply_owned(namespace, policy.config_map(run, spec, trainer_config), update=False)
    endpoint = settings().s3_job_endpoint or config.endpoint
    manifest = policy.job(
        run, spec, policy.trainer_image(spec, __version__), endpoint, config.bucket
    )
    job, action = apply.apply_owned(namespace, manifest, update=False)
    return job, action == "created"


@reconciler.controller(
    TRAINING_RUNS, TRAINING_RUN, gather=_gather, when=lambda status, **_: not _finished(status)
)
def reconcile_trainingrun(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    namespace: str | None,
    name: str,
    patch: kopf.Patch,
    observed: Observed,
    **_: Any,
) -> float | None:
    """Creates the Job when the run has none, else follows it; status goes into ``patch``.
    Returns None: every further step is woken by a change (Job, pod, Dataset, run)."""
    assert namespace is not None  # TrainingRun is namespaced
    current = dict(status)
    generation = body["metadata"].get("generation")
    try:
        parsed = TrainingRunSpec.model_validate(dict(spec))
    except ValidationError as error:
        # Not retried: the next spec change (a new generation) wakes the run again.
        message = describe_validation_error(error)
        patch.status.update(
            phase=current.get("phase") or "Pending",
            observedGeneration=generation,
            conditions=_waiting(current, generation, Reason.INVALID_SPEC, message),
        )
        was = get_condition(current.get("conditions"), ConditionType.READY) or {}
        if (was.get("reason"), was.get("message")) != (Reason.INVALID_SPEC, message):
            events.warning(body, reason=Reason.INVALID_SPEC, message=message)
        return None
    job = observed.job
    if job is None and current.get("jobName"):
        # Not in the watch cache: just created (its event is on the way), or deleted.
        job = objects.read_job(namespace, current["jobName"])
    if job is None and _trained(current, observed):
        # The training Job finished and was removed since (by hand, a TTL or a cleanup
        # policy): training is never repeated; the run goes on with its evaluation.
        track(body, parsed, current, namespace, patch, _completed_job(current), observed)
    elif job is None or not _controlled_by(job, body):
        # No Job yet, or one of a deleted run of the same name: start() creates ours, or
        # reports that the name is still taken.
        start(body, parsed, current, namespace, patch, observed.dataset)
    else:
        track(body, parsed, current, namespace, patch, job, observed)
    return None


def start(
    body: kopf.Body,
    parsed: TrainingRunSpec,
    current: dict[str, Any],
    namespace: str,
    patch: kopf.Patch,
    dataset: dict[str, Any] | None,
) -> None:
    """Creates (or adopts) the run's Job and records lineage; a Job deleted before the run
    finished is created again (same name, same recorded dataset version)."""
    generation = body["metadata"].get("generation")
    recreate = bool(current.get("jobName"))
    try:
        dataset_version, slices = _resolve_dataset_version(
            dataset, namespace, parsed, current.get("datasetVersion")
        )
    except kopf.TemporaryError as exc:
        patch.status["phase"] = current.get("phase") or "Pending"
        patch.status["conditions"] = _conditions(
            current,
            generation,
            {
                ConditionType.READY: Verdict("False", Reason.DATASET_NOT_FOUND, str(exc)),
                ConditionType.SUCCEEDED: Verdict("Unknown", Reason.DATASET_NOT_FOUND, str(exc)),
            },
        )
        raise
    try:
        job, created = _ensure_job(body, parsed, namespace, dataset_version, slices)
    except StoreError as exc:
        _storage_down(patch, current, generation, exc)
    except custom.NameTakenError as exc:
        # Never adopted or overwritten; the run starts once the name is free.
        what = (
            "give the training pod its S3 credentials"
            if exc.kind == "Secret"
            else f"create the run's {exc.kind}"
        )
        _name_taken(body, current, patch, f"cannot {what}: {exc}")
    except custom.StaleOwnerError as exc:
        # A run deleted and recreated under the same name: its predecessor's Job (or
        # ConfigMap) is still being garbage-collected. Adopting it would report the old
        # Job's outcome, so wait until the name is free.
        patch.status["phase"] = current.get("phase") or "Pending"
        patch.status["conditions"] = _conditions(
            current,
            generation,
            {
                ConditionType.READY: Verdict("False", STALE_OWNER, str(exc)),
                ConditionType.SUCCEEDED: Verdict("Unknown", STALE_OWNER, str(exc)),
            },
        )
        raise kopf.TemporaryError(str(exc), delay=STALE_OWNER_RETRY) from exc
    except Exception as exc:
        # Whatever went wrong creating the Job is shown on the run, not only in the log.
        message = f"could not create the training Job: {type(exc).__name__}: {exc}"
        patch.status["phase"] = current.get("phase") or "Pending"
        patch.status["conditions"] = _waiting(
            current, generation, Reason.JOB_CREATE_FAILED, message
        )
        events.warning(body, reason=Reason.JOB_CREATE_FAILED, message=message)
        raise kopf.TemporaryError(message, delay=30) from exc
    if recreate:
        message = f"Job {current['jobName']} was deleted before the run finished; recreated it"
        patch.status["conditions"] = _conditions(
            current,
            generation,
            {ConditionType.READY: Verdict("False", Reason.JOB_RECREATED, message)},
        )
        events.warning(body, reason=Reason.JOB_RECREATED, message=message)
        return
    image = job["spec"]["template"]["spec"]["containers"][0]["image"]
    code = {"image": image, "configHash": policy.config_hash(parsed)}
    if "@sha256:" in image:
        code["imageDigest"] = image.split("@", 1)[1]
    verb = "created" if created else "adopted existing"
    message = (
        f"{verb} Job {job['metadata']['name']} training dataset "
        f"{parsed.dataset_ref.name}@{dataset_version[:12]} with {image}"
    )
    patch.status.update(
        phase=current.get("phase") or "Pending",
        jobName=job["metadata"]["name"],
        datasetVersion=dataset_version,
        codeVersion=code,
        observedGeneration=generation,
        conditions=_waiting(current, generation, Reason.JOB_CREATED, message),
    )
    if created:
        events.normal(body, reason=Reason.JOB_CREATED, message=message)
    RECONCILIATIONS.labels(
        kind="TrainingRun", outcome="job-created" if created else "adopted"
    ).inc()


def track(
    body: kopf.Body,
    parsed: TrainingRunSpec,
    current: dict[str, Any],
    namespace: str,
    patch: kopf.Patch,
    job: dict[str, Any],
    observed: Observed,
) -> None:
    """Follows the training Job, then the evaluation Job, to a phase. The run succeeds
    only with the evaluator's measurements; what the trainer reported is never its
    metrics."""
    generation = body["metadata"].get("generation")
    state = policy.job_state(job, observed.pods)
    finished_job = job
    if state.phase == "Succeeded":
        state, evaluation_job = _evaluation(body, parsed, current, namespace, patch, observed)
        finished_job = evaluation_job or job
        if state.reason == Reason.EVALUATION_FAILED:
            state = policy.JobState(
                state.phase, state.reason, _evaluator_error(observed) or state.message
            )
    if (
        state.phase == current.get("phase")
        and not state.finished
        and state.reason
        == (get_condition(current.get("conditions"), ConditionType.READY) or {}).get("reason")
    ):
        return
    update: dict[str, Any] = {"phase": state.phase}
    if job.get("status", {}).get("startTime") and not current.get("startTime"):
        update["startTime"] = job["status"]["startTime"]
    reason, message = state.reason, state.message
    if state.phase == "Succeeded":
        try:
            evaluation = _read_evaluation(observed, str(body["metadata"]["uid"]))
        except EvaluationFailedError as exc:
            reason, message = Reason.EVALUATION_FAILED, str(exc)
            update["phase"] = "Failed"
        except StoreError as exc:
            _storage_down(patch, current, generation, exc)
        else:
            update["metrics"] = evaluation["metrics"]
            update["artifacts"] = evaluation["artifacts"]
            update["evaluation"] = evaluation["reference"]
            message = _evaluated_message(current, evaluation)
            used = policy.field_data_used(parsed, evaluation)
            if used is not None:
                update["fieldData"] = used.model_dump(by_alias=True, exclude_none=True, mode="json")
                message += f"; {policy.field_data_message(used)}"
    elif state.phase == "Failed" and state.reason != Reason.EVALUATION_FAILED:
        failure = _read_failure(body)
        if failure:
            message = f"{message}; trainer error: {failure}"
    if update["phase"] in FINISHED_PHASES:
        update["completionTime"] = (finished_job.get("status") or {}).get(
            "completionTime"
        ) or format_time(_now())
    verdicts = policy.run_verdicts(policy.JobState(update["phase"], reason, message))
    update["conditions"] = _conditions(current, generation, verdicts)
    patch.status.update(update)
    if update["phase"] in FINISHED_PHASES:
        event = events.normal if update["phase"] == "Succeeded" else events.warning
        event(body, reason=reason, message=message)
        RECONCILIATIONS.labels(kind="TrainingRun", outcome=update["phase"].lower()).inc()
    elif reason == Reason.EVALUATING and reason != (
        get_condition(current.get("conditions"), ConditionType.READY) or {}
    ).get("reason"):
        events.normal(body, reason=reason, message=message)


def _interval(evaluation: dict[str, Any], metric: str) -> str:
    """`` (n=12, 95 % CI 0.7575-1)`` from the evaluation's intervals, or nothing."""
    known = (evaluation["metrics"].get("intervals") or {}).get(metric)
    if not isinstance(known, dict):
        return ""
    try:
        return (
            f" (n={int(known['samples'])}, {float(known['confidence']) * 100:.4g} % CI "
            f"{float(known['low']):.4g}-{float(known['high']):.4g})"
        )
    except (KeyError, TypeError, ValueError):
        return ""


def _evaluated_message(current: dict[str, Any], evaluation: dict[str, Any]) -> str:
    overall = evaluation["metrics"].get("overall", {})
    claimed = (evaluation.get("trainerReported") or {}).get("overall") or {}
    message = (
        f"evaluated by EdgeOps on {current.get('datasetVersion', '')[:12]} "
        f"({evaluation.get('reference', {}).get('format', '?')} as reference): accuracy="
        f"{overall.get('accuracy', float('nan')):.4f}{_interval(evaluation, 'accuracy')}, "
        f"{len(evaluation['artifacts'])} artifacts"
    )
    if "tflite_int8_accuracy" in overall:
        message += f", int8 accuracy={overall['tflite_int8_accuracy']:.4f}"
    failed = evaluation["metrics"].get("exportErrors") or {}
    if failed:
        message += "; failed exports (their gates fail): " + "; ".join(
            f"{fmt}: {reason}" for fmt, reason in sorted(failed.items())
        )
    if isinstance(claimed.get("accuracy"), int | float):
        message += f"; the trainer reported accuracy={claimed['accuracy']:.4f} (not trusted)"
    return message


def _evaluation(
    body: kopf.Body,
    parsed: TrainingRunSpec,
    current: dict[str, Any],
    namespace: str,
    patch: kopf.Patch,
    observed: Observed,
) -> tuple[policy.JobState, dict[str, Any] | None]:
    """The run's state once its training Job completed: creates the evaluation Job when
    there is none, else follows it. Returns (state, the evaluation Job if any)."""
    job = observed.evaluation_job
    if job is None:
        try:
            if not artifact_store().exists(_results_key(body)):
                raise MissingResultsError(
                    f"the Job completed but the trainer's results manifest "
                    f"s3://{artifact_store().bucket}/{_results_key(body)} is missing"
                )
            job = _ensure_evaluation_job(body, parsed, current, namespace, observed.dataset)
        except MissingResultsError as exc:
            return policy.JobState("Failed", Reason.RESULTS_MISSING, str(exc)), None
        except StoreError as exc:
            _storage_down(patch, current, body["metadata"].get("generation"), exc)
        except custom.NameTakenError as exc:
            _name_taken(
                body,
                current,
                patch,
                f"cannot create the evaluation {exc.kind} in {settings().namespace}: {exc}",
            )
    return policy.evaluation_state(job, observed.evaluation_pods), job


def _ensure_evaluation_job(
    body: kopf.Body,
    parsed: TrainingRunSpec,
    current: dict[str, Any],
    namespace: str,
    dataset: dict[str, Any] | None,
) -> dict[str, Any]:
    """Creates (or finds) the evaluation Job in the operator's namespace: EdgeOps's own
    image, whatever the run's trainer image is, with the operator's S3 credentials in a
    Secret there (a tenant can read neither)."""
    meta = body["metadata"]
    run = {"metadata": {"name": meta["name"], "namespace": namespace, "uid": meta["uid"]}}
    home = settings().namespace
    store = artifact_store()
    config = store.config
    apply.apply_owned(
        home,
        custom.secret_manifest(
            policy.EVALUATOR_S3_SECRET,
            {"accessKey": config.access_key, "secretKey": config.secret_key},
        ),
    )
    # The version the Job trained (recorded when it was created), the slices as then.
    dataset_version, slices = _resolve_dataset_version(
        dataset, namespace, parsed, current.get("datasetVersion")
    )
    evaluation_config = policy.evaluation_config(
        namespace, meta["name"], meta["uid"], parsed, dataset_version, list(slices)
    )
    endpoint = settings().s3_job_endpoint or config.endpoint
    manifest = policy.evaluation_job(
        run,
        evaluation_config,
        f"{ImageRepositories.TRAINER}:{__version__}",
        endpoint,
        config.bucket,
    )
    job, _ = apply.apply_owned(home, manifest, update=False)
    labels = job["metadata"].get("labels") or {}
    run_of = (labels.get(Labels.TRAINING_RUN), labels.get(Labels.TRAINING_RUN_NAMESPACE))
    if run_of != (meta["name"], namespace):
        # Labelled managed-by=edgeops but not this run's (hand-made, or restored from a
        # backup): following it would report another Job's outcome as this evaluation.
        raise custom.NameTakenError(
            "Job",
            manifest["metadata"]["name"],
            f"is labelled for run {run_of[1]}/{run_of[0]}, not {namespace}/{meta['name']}",
        )
    return job


class EvaluationFailedError(Exception):
    """The evaluation finished without a result the operator can trust."""


def _evaluator_error(observed: Observed) -> str | None:
    """The error the evaluator printed in its last pod's log, if any."""
    failed = [
        p for p in observed.evaluation_pods if (p.get("status") or {}).get("phase") == "Failed"
    ]
    if not failed:
        return None
    meta = failed[-1]["metadata"]
    verdict = policy.parse_evaluation_marker(
        objects.read_pod_log(meta["namespace"], meta["name"], "evaluator") or ""
    )
    error = (verdict or {}).get("error")
    return f"evaluation failed: {str(error)[:600]}" if error else None


def _read_evaluation(observed: Observed, uid: str) -> dict[str, Any]:
    """The evaluation document the evaluator's log names, re-hashed. Raises
    EvaluationFailedError (no marker, an error marker, a digest without its document) or
    StoreError."""
    pods = [
        p for p in observed.evaluation_pods if (p.get("status") or {}).get("phase") == "Succeeded"
    ]
    if not pods:
        raise EvaluationFailedError("the evaluation Job completed but its pod is gone")
    pod = pods[-1]["metadata"]
    log = objects.read_pod_log(pod["namespace"], pod["name"], "evaluator") or ""
    verdict = policy.parse_evaluation_marker(log)
    digest = (verdict or {}).get("sha256")
    if not isinstance(digest, str):
        error = (verdict or {}).get("error") or "the evaluator reported no result"
        raise EvaluationFailedError(str(error)[:600])
    store = artifact_store()
    try:
        document = json.loads(store.get_blob(digest))
    except (IntegrityError, ValueError) as exc:
        raise EvaluationFailedError(f"evaluation document {digest[:16]}...: {exc}") from exc
    if not isinstance(document, dict) or (document.get("run") or {}).get("uid") != uid:
        raise EvaluationFailedError(f"evaluation document {digest[:16]}... is not this run's")
    document["reference"] = {
        "uri": f"s3://{store.bucket}/{blob_key(digest)}",
        "sha256": digest,
        "format": document.get("reference"),
    }
    return dict(document)


class MissingResultsError(Exception):
    pass


def _results_key(body: kopf.Body) -> str:
    meta = body["metadata"]
    return f"{policy.results_prefix(meta['namespace'], meta['name'], meta['uid'])}/results.json"


def _storage_down(
    patch: kopf.Patch, current: dict[str, Any], generation: Any, error: StoreError
) -> NoReturn:
    """StorageAvailable=False with what to fix, then retry: an outage heals by itself, a
    refusal or misconfiguration once someone fixes it."""
    reason, message = describe_store_error(error)
    patch.status["conditions"] = _conditions(
        current, generation, {ConditionType.STORAGE_AVAILABLE: Verdict("False", reason, message)}
    )
    raise kopf.TemporaryError(f"object store: {message}", delay=10) from error


def _read_failure(body: kopf.Body) -> str | None:
    meta = body["metadata"]
    key = f"{policy.results_prefix(meta['namespace'], meta['name'], meta['uid'])}/failure.json"
    try:
        store = artifact_store()
        if store.exists(key):
            return str(store.get_json(key).get("error", ""))[:600]
    except StorageUnavailableError:
        return None
    return None
