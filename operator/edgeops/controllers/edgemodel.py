"""EdgeModel controller: the model registry, gates, signing, retraining and promotion.

``reconcile_edgemodel`` is the model's one reconciler and status writer
(`edgeops.controllers.reconciler`), woken when the model, one of its TrainingRuns, its
Dataset or its InferenceService changes (read from watch indexes, no API call). Each pass:
register the TrainingRuns that finished (gates -> sign -> version N), handle a
promote/rollback request, measure drift when due (`edgeops.controllers.drift_monitor`:
status.drift, DataDrift, ConceptDrift), evaluate the retraining triggers (at most one new
run), keep the InferenceService on the current version, then write only the status keys
that changed.
Decisions are pure functions in `edgeops.policy`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, Final

import kopf
from pydantic import ValidationError

from edgeops.api.common import (
    ArtifactRef,
    EvaluationMetrics,
    describe_validation_error,
    format_time,
)
from edgeops.api.conditions import Verdicts, get_condition, update_conditions
from edgeops.api.constants import (
    API_VERSION,
    EDGE_MODEL,
    EDGE_MODELS,
    GROUP,
    TRAINING_RUN,
    TRAINING_RUNS,
    Annotations,
    ConditionType,
    Labels,
    Reason,
)
from edgeops.api.edgemodel import (
    EdgeModelSpec,
    EdgeModelStatus,
    ModelVersion,
    Signature,
    TriggerState,
)
from edgeops.api.fleetrollout import FleetRolloutTemplate
from edgeops.api.trainingrun import FINISHED_PHASES, TrainingRunStatus
from edgeops.controllers import bundles, drift_monitor, events, reconciler
from edgeops.controllers.serving import reconcile_serving
from edgeops.controllers.signing_key import publish_public_key
from edgeops.controllers.storage import artifact_store
from edgeops.controllers.watches import Key, first, items
from edgeops.k8s import apply, custom
from edgeops.metrics.operator import RECONCILIATIONS
from edgeops.policy import admission, gates, promotion, registry, retrain
from edgeops.settings import settings
from edgeops.store import StoreError

log = logging.getLogger(__name__)

FINISHED: Final = FINISHED_PHASES
CONDITION_TYPES: Final = (
    ConditionType.READY,
    ConditionType.GATES_PASSED,
    ConditionType.PROMOTED,
    ConditionType.SERVING,
)
REASONS_ANNOTATION: Final = f"{GROUP}/trigger-reasons"
#: Seconds before trying again after the object store failed during registration.
STORAGE_RETRY_SECONDS: Final = 10.0
#: ... after a run's name was still held by a deleted model's run of the same name.
STALE_OWNER_RETRY_SECONDS: Final = 5.0
#: Names ``<model>-v<n>-<k>`` tried for one promotion's FleetRollout before giving up: each
#: one held by a user's object is skipped (a GET each), so a few are enough.
ROLLOUT_NAME_ATTEMPTS: Final = 5
#: ... after the triggers or serving failed for another reason.
FAILURE_RETRY_SECONDS: Final = 30.0


@dataclass(frozen=True)
class Observed:
    """What an EdgeModel's reconcile reads, from the watch indexes."""

    runs: list[dict[str, Any]]
    dataset: dict[str, Any] | None
    inference_service: dict[str, Any] | None
    #: the namespace's FleetRollouts of this model (edgeops.controllers.fleetrollout index)
    rollouts: list[Any] = field(default_factory=list)


def _gather(
    namespace: str,
    name: str,
    body: dict[str, Any],
    trainingruns_by_model: kopf.Index[Key, Any],
    datasets: kopf.Index[Key, Any],
    inference_services: kopf.Index[Key, Any],
    fleetrollout_views: kopf.Index[Key, Any] | None = None,
    **_: Any,
) -> Observed:
    dataset = (((body.get("spec") or {}).get("training") or {}).get("datasetRef") or {}).get("name")
    rollouts = items(fleetrollout_views, (namespace, "")) if fleetrollout_views is not None else []
    return Observed(
        runs=items(trainingruns_by_model, (namespace, name)),
        dataset=first(datasets, (namespace, str(dataset))),
        inference_service=first(inference_services, (namespace, name)),
        rollouts=[r for r in rollouts if r.model == name],
    )


@dataclass
class Tick:
    """State of one reconciliation: the status being built and the conditions to set."""

    body: kopf.Body
    namespace: str
    name: str
    spec: EdgeModelSpec
    status: EdgeModelStatus
    now: dt.datetime
    conditions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    observed: Observed = field(default_factory=lambda: Observed([], None, None))
    #: seconds until a pending trigger becomes due (cooldown, cron), if any.
    requeue: float | None = None
    #: whether the drift monitor measured in this pass (only then is status.drift written).
    drift_measured: bool = False
    #: condition types to remove (the drift conditions once onDrift is switched off).
    dropped_conditions: set[str] = field(default_factory=set)

    def retry_in(self, seconds: float) -> None:
        """Asks to run again within ``seconds`` (something failed that may heal)."""
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    @property
    def triggers(self) -> TriggerState:
        if self.status.triggers is None:
            self.status.triggers = TriggerState()
        return self.status.triggers


@reconciler.controller(EDGE_MODELS, EDGE_MODEL, gather=_gather)
def reconcile_edgemodel(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    name: str,
    namespace: str | None,
    patch: kopf.Patch,
    memo: kopf.Memo,
    observed: Observed | None = None,
    **_: Any,
) -> float | None:
    """One pass over the model (see the module docstring); status goes into ``patch``.
    Returns the seconds until a pending trigger is due, or None."""
    if namespace is None or meta.get("deletionTimestamp"):
        return None  # namespaced kind (type guard); a model being deleted needs nothing more
    try:
        seen = observed or Observed([], None, None)
        return _reconcile(body, spec, status, meta, name, namespace, patch, memo, seen)
    except Exception as error:
        if custom.namespace_terminating(error):
            return None
        if isinstance(error, custom.StaleOwnerError):
            # E.g. a FleetRollout name still held by a deleted model of the same name.
            raise kopf.TemporaryError(str(error), delay=5) from error
        raise


def _reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    name: str,
    namespace: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    observed: Observed,
) -> float | None:
    now = dt.datetime.now(dt.UTC)
    old = dict(status)
    try:
        parsed = EdgeModelSpec.model_validate(dict(spec))
    except ValidationError as error:
        _write(
            patch,
            old,
            EdgeModelStatus.model_validate(old),
            meta.get("generation"),
            now,
            {ConditionType.READY: ("False", Reason.INVALID_SPEC, describe_validation_error(error))},
        )
        return None
    # A schedule the cron parser refuses (stored while the webhook was down) switches off
    # that one trigger: gates, promotion, rollouts and the other triggers go on.
    bad_schedule = "; ".join(admission.schedule_errors("edgemodels", dict(spec)))
    if bad_schedule:
        retrain_off = parsed.retrain.model_copy(update={"schedule": None})
        parsed = parsed.model_copy(update={"retrain": retrain_off})
    tick = Tick(
        body, namespace, name, parsed, EdgeModelStatus.model_validate(old), now, observed=observed
    )
    _schedule_condition(tick, old, bad_schedule)
    runs = [r for r in observed.runs if _owned_by(r, body)]
    try:
        for run in _unregistered(tick, runs):
            _register(tick, run)
    except StoreError as error:
        tick.conditions[ConditionType.READY] = (
            "False",
            Reason.STORAGE_UNAVAILABLE,
            f"cannot publish to the object store: {error}",
        )
        tick.retry_in(STORAGE_RETRY_SECONDS)
    except ValueError as error:
        # E.g. a target whose format the finished run did not export: say so, keep going.
        tick.conditions[ConditionType.READY] = (
            "False",
            Reason.REGISTRATION_FAILED,
            f"cannot register the finished run: {error}",
        )
    # Past this point registration has side effects (labels, bundles): whatever fails
    # below is reported in a condition, and the status is always written.
    failure: str | None = None
    failure_reason: str = Reason.TRIGGER_FAILED
    try:
        _resign_expiring(tick)
    except StoreError as error:
        tick.conditions[ConditionType.READY] = (
            "False",
            Reason.STORAGE_UNAVAILABLE,
            f"cannot sign expiring bundles again: {error}",
        )
        tick.retry_in(STORAGE_RETRY_SECONDS)
    _handle_promote_request(tick, meta)
    _measure_drift(tick)
    active = [r for r in runs if (r.get("status") or {}).get("phase") not in FINISHED]
    started: list[dict[str, Any]] = []
    try:
        started = _evaluate_triggers(tick, meta, memo, len(active))
    except custom.StaleOwnerError as error:
        # A model deleted and recreated under the same name: the old one's run of that
        # name is still being garbage-collected. The triggers stay pending (retried).
        failure = f"cannot start a TrainingRun yet: {error}"
        tick.retry_in(STALE_OWNER_RETRY_SECONDS)
    except custom.NameTakenError as error:
        # A user's own TrainingRun holds the next run's name: it is never adopted or
        # changed. The triggers stay pending; looked at again with backoff.
        failure = f"cannot start a TrainingRun: {error}"
        failure_reason = Reason.NAME_TAKEN
        events.warning(tick.body, Reason.NAME_TAKEN, failure)
        tick.retry_in(reconciler.retry_later(memo))
    except Exception as error:
        log.exception("edgemodel %s/%s: retraining triggers failed", namespace, name)
        failure = f"retraining triggers failed: {type(error).__name__}: {error}"
        tick.retry_in(FAILURE_RETRY_SECONDS)
    try:
        renew_in = reconcile_serving(
            tick.body,
            tick.namespace,
            tick.spec,
            tick.status,
            tick.conditions,
            memo,
            observed.inference_service,
        )
        if renew_in is not None:
            tick.retry_in(renew_in)  # the predictor's credentials are due for renewal
    except Exception as error:
        log.exception("edgemodel %s/%s: serving failed", namespace, name)
        tick.conditions[ConditionType.SERVING] = (
            "False",
            Reason.SERVING_FAILED,
            f"{type(error).__name__}: {error}",
        )
        tick.retry_in(FAILURE_RETRY_SECONDS)
    _record_fleet(tick)
    _ready(tick, [*active, *started])
    if failure is not None:
        tick.conditions[ConditionType.READY] = ("False", failure_reason, failure)
    _write(
        patch, old, tick.status, meta.get("generation"), now, tick.conditions,
        drift=tick.drift_measured, dropped=tick.dropped_conditions,
    )  # fmt: skip
    return tick.requeue


def _schedule_condition(tick: Tick, old: dict[str, Any], problem: str) -> None:
    """ScheduleValid=False (InvalidSpec) while spec.retrain.schedule cannot be run, with a
    Warning Event when that starts or its message changes; removed once it can."""
    if not problem:
        tick.dropped_conditions.add(ConditionType.SCHEDULE_VALID)
        return
    message = (
        f"{problem}; the schedule trigger is off until it is fixed (the other triggers, "
        "gates, promotion and rollouts keep working)"
    )
    before = next(
        (c for c in old.get("conditions") or [] if c.get("type") == ConditionType.SCHEDULE_VALID),
        None,
    )
    if before is None or before.get("message") != message:
        events.warning(tick.body, reason=Reason.INVALID_SPEC, message=message)
    tick.conditions[ConditionType.SCHEDULE_VALID] = ("False", Reason.INVALID_SPEC, message)


def _measure_drift(tick: Tick) -> None:
    """The drift monitor (:mod:`edgeops.controllers.drift_monitor`) for the version the
    fleet runs: a due measurement replaces status.drift, sets DataDrift and ConceptDrift,
    emits an Event per verdict that changed, and requeues at the next due time. A failure
    here is a condition, never a failed reconcile."""
    if not tick.spec.retrain.on_drift.enabled:
        _clear_drift(tick)
        return
    number = tick.status.fleet_version or tick.status.current_version
    version = registry.find(tick.status, number) if number else None
    try:
        outcome = drift_monitor.monitor(
            tick.spec.retrain.on_drift, tick.namespace, tick.name, version,
            tick.status.drift, tick.now,
        )  # fmt: skip
    except Exception as error:
        log.exception("edgemodel %s/%s: drift monitor failed", tick.namespace, tick.name)
        tick.conditions[ConditionType.DATA_DRIFT] = (
            "Unknown",
            Reason.DRIFT_MEASUREMENT_FAILED,
            f"drift monitor failed: {type(error).__name__}: {error}",
        )
        tick.retry_in(FAILURE_RETRY_SECONDS)
        return
    tick.conditions.update(outcome.conditions)
    if outcome.summary is not None:
        tick.status.drift = outcome.summary
        tick.drift_measured = True
    for warn, reason, message in outcome.events:
        (events.warning if warn else events.normal)(tick.body, reason, message)
    if outcome.requeue is not None:
        tick.retry_in(max(outcome.requeue, 1.0))


DRIFT_CONDITIONS: Final = (ConditionType.DATA_DRIFT, ConditionType.CONCEPT_DRIFT)


def _clear_drift(tick: Tick) -> None:
    """With ``retrain.onDrift`` off nothing is measured, so a standing DataDrift or
    ConceptDrift condition (and ``status.drift``) would describe a monitor that no longer
    runs: they are removed, with one Event saying what the last measurement was."""
    old = (tick.body.get("status") or {}).get("conditions") or []
    present = [c for c in old if c.get("type") in DRIFT_CONDITIONS]
    if not present and tick.status.drift is None:
        return
    tick.dropped_conditions.update(DRIFT_CONDITIONS)
    last = ", ".join(f"{c['type']}={c.get('status')} ({c.get('reason')})" for c in present)
    tick.status.drift = None
    tick.drift_measured = True
    events.normal(
        tick.body,
        Reason.DRIFT_MONITORING_DISABLED,
        "retrain.onDrift is disabled: drift is no longer measured; removed "
        + (last or "status.drift"),
    )


def _record_fleet(tick: Tick) -> None:
    """status.fleetVersion from the newest Succeeded FleetRollout of the model (the rollout
    controller owns the rollout's status; this controller owns the model's). Recomputed on
    every pass, so a deleted rollout is never named (:func:`promotion.fleet_record`)."""
    record = promotion.fleet_record(
        tick.name, tick.observed.rollouts, tick.status.fleet_version, tick.status.fleet_rollout
    )
    if record.reason is None:
        return
    tick.status.fleet_version, tick.status.fleet_rollout = record.version, record.rollout
    events.normal(tick.body, record.reason, record.message)


# --- registry -----------------------------------------------------------------------------


def _owned_by(run: dict[str, Any], model: kopf.Body) -> bool:
    refs = run["metadata"].get("ownerReferences") or []
    return any(ref.get("uid") == model["metadata"]["uid"] for ref in refs)


def _label_version(run: dict[str, Any]) -> int | None:
    value = (run["metadata"].get("labels") or {}).get(Labels.MODEL_VERSION)
    return int(value) if value and value.isdigit() else None


def _unregistered(tick: Tick, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished runs without a version: labelled ones first, then oldest first. A run
    labelled with a number above the registry's highest was labelled just before a crash:
    it is registered under that number (the label is written first so a number is never
    handed out twice)."""
    latest = tick.status.latest_version or 0
    pending = []
    for run in runs:
        if (run.get("status") or {}).get("phase") not in FINISHED:
            continue
        number = _label_version(run)
        if number is None or number > latest:
            pending.append(run)
    # Runs already labelled (before a crash) go first, so an unlabelled run that finished
    # later can never be handed one of their numbers.
    return sorted(
        pending,
        key=lambda r: (
            _label_version(r) is None,
            _label_version(r) or 0,
            r["metadata"]["creationTimestamp"],
            r["metadata"]["name"],
        ),
    )


def _register(tick: Tick, run: dict[str, Any]) -> None:
    run_name = run["metadata"]["name"]
    number = _label_version(run) or registry.next_number(tick.status)
    if _label_version(run) is None:
        custom.patch_metadata(
            tick.namespace, TRAINING_RUNS, run_name, labels={Labels.MODEL_VERSION: str(number)}
        )
    run_status = TrainingRunStatus.model_validate(run.get("status") or {})
    if run_status.phase == "Failed":
        why = _condition_message(run, ConditionType.SUCCEEDED) or "the TrainingRun failed"
        version = registry.failed(number, run_name, run_status, why, tick.now)
        events.warning(
            tick.body,
            Reason.TRAINING_FAILED,
            f"v{number} ({run_name}) not registered as a candidate: {why}",
        )
    elif run_status.evaluation is None:
        # Metrics a trainer wrote itself (a run finished before evaluation existed) are
        # claims, not measurements: never gated, never signed.
        why = "the run's metrics were not measured by EdgeOps's evaluator"
        version = registry.failed(number, run_name, run_status, why, tick.now)
        events.warning(tick.body, Reason.EVALUATION_FAILED, f"v{number} ({run_name}): {why}")
    else:
        version = _candidate(tick, number, run_name, run_status)
    _publish_index(tick, version)
    tick.status.versions = registry.append(tick.status, version, tick.spec.history_limit)
    tick.status.latest_version = max(number, tick.status.latest_version or 0)
    RECONCILIATIONS.labels(kind="EdgeModel", outcome=f"version-{version.state.lower()}").inc()
    if version.state == "Approved":
        _on_approved(tick, number)


def _candidate(tick: Tick, number: int, run_name: str, run: TrainingRunStatus) -> ModelVersion:
    current = registry.find(tick.status, tick.status.current_version)
    verdict = gates.evaluate(tick.spec, run.metrics or EvaluationMetrics(), run.artifacts, current)
    summary = gates.summary(verdict)
    signature = None
    if verdict.passed:
        signature = _sign(tick, number, run.artifacts, resign=False)
        tick.conditions[ConditionType.GATES_PASSED] = (
            "True",
            Reason.GATES_PASSED,
            f"v{number} ({run_name}): {summary}",
        )
        events.normal(tick.body, Reason.GATES_PASSED, f"v{number}: {summary}")
        events.normal(
            tick.body,
            Reason.SIGNED,
            f"v{number} bundles for {len(tick.spec.targets)} target(s) signed with "
            f"{signature.key_id}: {signature.manifest_uri}",
        )
    else:
        tick.conditions[ConditionType.GATES_PASSED] = (
            "False",
            Reason.GATES_FAILED,
            f"v{number} ({run_name}) rejected: {summary}",
        )
        events.warning(tick.body, Reason.GATES_FAILED, f"v{number} rejected: {summary}")
    return registry.from_run(
        number, run_name, run, tick.spec.targets, verdict, signature, summary, tick.now
    )


def _validity() -> dt.timedelta:
    return dt.timedelta(days=settings().bundle_validity_days)


def _sign(tick: Tick, number: int, artifacts: list[ArtifactRef], *, resign: bool) -> Signature:
    key = publish_public_key()
    return bundles.publish(
        artifact_store(),
        key,
        namespace=tick.namespace,
        model=tick.name,
        uid=tick.uid,
        number=number,
        targets=tick.spec.targets,
        artifacts=artifacts,
        now=tick.now,
        validity=_validity(),
        resign=resign,
    )


def _resign_expiring(tick: Tick) -> None:
    """Signs again every approved version whose manifests expire within a third of their
    validity, and asks to run again when the next one is due (the only clock-driven
    wakeup signing needs)."""
    validity = _validity()
    for version in tick.status.versions:
        if version.state != "Approved":
            continue
        due = bundles.resign_due(version.signature, validity)
        if due is None:
            continue
        if due > tick.now:
            tick.retry_in((due - tick.now).total_seconds())
            continue
        version.signature = _sign(tick, version.number, version.artifacts, resign=True)
        _publish_index(tick, version)
        events.normal(
            tick.body,
            Reason.SIGNED,
            f"v{version.number} bundles signed again with {version.signature.key_id}, valid "
            f"until {version.signature.expires_at}",
        )
        tick.retry_in((validity * 2 / 3).total_seconds())


def _publish_index(tick: Tick, version: ModelVersion) -> None:
    """The full registry (never pruned) in S3, next to the bundles."""
    store = artifact_store()
    key = bundles.registry_key(tick.namespace, tick.name, tick.uid)
    index: dict[str, Any] = store.get_json(key) if store.exists(key) else {}
    entries = {int(v["number"]): v for v in index.get("versions", [])}
    entries[version.number] = version.model_dump(by_alias=True, exclude_none=True, mode="json")
    store.put_json(
        key,
        {
            "namespace": tick.namespace,
            "model": tick.name,
            "versions": [entries[n] for n in sorted(entries)],
        },
    )


# --- promotion ----------------------------------------------------------------------------


def _on_approved(tick: Tick, number: int) -> None:
    if tick.spec.promotion.mode == "Auto":
        _make_current(tick, number, f"v{number} passed its gates (promotion mode Auto)")
        return
    tick.status.candidate_version = number
    message = promotion.manual_instructions(tick.name, number)
    tick.conditions[ConditionType.PROMOTED] = ("False", Reason.AWAITING_APPROVAL, message)
    events.normal(tick.body, Reason.AWAITING_APPROVAL, message)


def _make_current(tick: Tick, number: int, why: str) -> None:
    previous = tick.status.current_version
    tick.status.current_version = number
    if tick.status.candidate_version is not None and tick.status.candidate_version <= number:
        tick.status.candidate_version = None
    reason = Reason.ROLLED_BACK if previous and number < previous else Reason.PROMOTED
    was = f" (was v{previous})" if previous else ""
    template = tick.spec.promotion.rollout_template
    existing = promotion.rollout_moving_to(number, tick.observed.rollouts)
    if template is None:
        message = (
            f"v{number} is current{was}: {why}; no rolloutTemplate, so create a "
            f"FleetRollout with modelRef {tick.name} and version {number}"
        )
    elif existing is not None:
        # A FleetRollout of this version already exists (a user's, e.g. rolling v1 out by
        # hand): a second one would move the same devices twice, under two policies.
        message = (
            f"v{number} is current{was}: {why}; FleetRollout {existing.name} "
            f"({existing.phase or 'new'}) already moves the fleet to it, so none was created"
        )
    else:
        rollout, taken = _create_rollout(tick, template, number, why)
        if rollout is None:
            message = (
                f"v{number} is current{was}: {why}; but no FleetRollout: the names "
                f"{', '.join(taken)} are all held by objects EdgeOps does not own (left "
                "alone); delete them and promote again, or create a FleetRollout by hand"
            )
            tick.conditions[ConditionType.PROMOTED] = ("False", Reason.NAME_TAKEN, message)
            events.warning(tick.body, Reason.NAME_TAKEN, message)
            return
        name = rollout["metadata"]["name"]
        message = f"v{number} is current{was}: {why}; FleetRollout {name} moves the fleet to it"
        if taken:
            message += f" ({', '.join(taken)} held by objects EdgeOps does not own, skipped)"
            events.warning(
                tick.body,
                Reason.NAME_TAKEN,
                f"FleetRollout {', '.join(taken)} exists and is not owned by EdgeOps (left "
                f"alone): created {name} for v{number} instead",
            )
    tick.conditions[ConditionType.PROMOTED] = ("True", reason, message)
    events.normal(tick.body, reason, message)


def _create_rollout(
    tick: Tick, template: FleetRolloutTemplate, number: int, why: str
) -> tuple[dict[str, Any] | None, list[str]]:
    """Creates the FleetRollout moving the fleet to ``number`` under the next free name
    ``<model>-v<number>-<k>``: a name held by an object EdgeOps does not own (a user's own
    FleetRollout) is never adopted or changed but skipped, at most
    :data:`ROLLOUT_NAME_ATTEMPTS` times. Returns (the rollout or None, the names skipped).
    Raises StaleOwnerError (a deleted namesake model's rollout awaits garbage collection),
    ApiException."""
    taken: list[str] = []
    for _ in range(ROLLOUT_NAME_ATTEMPTS):
        tick.triggers.promotion_counter += 1
        manifest = promotion.fleet_rollout(
            dict(tick.body), template, number, tick.triggers.promotion_counter, why
        )
        try:
            # Created once: afterwards its spec is the user's (pause, resume, abort).
            rollout, _ = apply.apply_owned(tick.namespace, manifest, update=False)
        except custom.NameTakenError:
            taken.append(manifest["metadata"]["name"])
            continue
        return rollout, taken
    return None, taken


def _handle_promote_request(tick: Tick, meta: kopf.Meta) -> None:
    raw = ((meta.get("annotations") or {}).get(Annotations.PROMOTE) or "").strip()
    token = retrain.request_token(raw)
    if not raw or token == tick.triggers.promote_request:
        return
    tick.triggers.promote_request = token  # handled once, whatever the outcome
    problem: str | None
    try:
        request = promotion.parse_request(raw)
    except ValueError as error:
        request, problem = None, str(error)
    else:
        problem = registry.promotable(tick.status, request.version) if request else None
    if problem is not None or request is None:
        message = f"promote request {raw[:64]!r} refused: {problem}"
        tick.conditions[ConditionType.PROMOTED] = ("False", Reason.NOT_PROMOTABLE, message)
        events.warning(tick.body, Reason.NOT_PROMOTABLE, message)
        return
    if request.version == tick.status.current_version:
        events.normal(tick.body, Reason.PROMOTED, f"v{request.version} is already current")
        return
    _make_current(tick, request.version, f"requested with {Annotations.PROMOTE}={raw}")


# --- retraining triggers -------------------------------------------------------------------


def _evaluate_triggers(
    tick: Tick, meta: kopf.Meta, memo: kopf.Memo, active: int
) -> list[dict[str, Any]]:
    ref = tick.spec.training.dataset_ref
    dataset = tick.observed.dataset
    latest = ((dataset or {}).get("status") or {}).get("latestVersion")
    current = registry.find(tick.status, tick.status.current_version)
    accuracy = None
    if current is not None and current.metrics is not None:
        accuracy = current.metrics.overall.get("accuracy")
    seen = retrain.Observed(
        now=tick.now,
        dataset_version=ref.version or latest,
        code_hash=retrain.code_hash(tick.spec.training),
        retrain_request=(meta.get("annotations") or {}).get(Annotations.RETRAIN),
        drift=tick.status.drift,
        current_accuracy=accuracy,
        active_runs=active,
        dataset_created=_published(dataset, ref.version or latest),
        newest_version=max(
            (v.number for v in tick.status.versions if v.state == "Approved"), default=None
        ),
    )
    decision = retrain.decide(tick.spec.retrain, tick.triggers, seen)
    next_check = retrain.seconds_until_next_check(tick.spec.retrain, decision, tick.now)
    if next_check is not None:
        tick.retry_in(next_check)
    if decision.start:
        # Triggers that fire together start one run that lists them all: a run starts a
        # short batching window after the first signal (a request seconds after a drift
        # report folds into the same run).
        since: dt.datetime = memo.get("signals_since") or tick.now
        memo["signals_since"] = since
        hold = retrain.batch_wait(since, tick.now, settings().trigger_batch_seconds)
        if hold > 0:
            tick.retry_in(hold)
            return []
    memo["signals_since"] = None
    if not decision.start:
        tick.status.triggers = decision.state
        blocked = (decision.blocked, tuple(decision.reasons))
        if decision.blocked and memo.get("blocked") != blocked:
            events.normal(tick.body, decision.blocked, decision.message)
        memo["blocked"] = blocked if decision.blocked else None
        memo["pending"] = decision.message if decision.blocked else None
        return []
    memo["blocked"] = memo["pending"] = None
    assert decision.reason is not None and seen.dataset_version is not None
    run = _start_run(tick, decision, seen.dataset_version)
    # Consumed only once the run exists: if creating it failed, the triggers still fire.
    tick.status.triggers = decision.state
    also = [f"{s.reason} ({s.detail})" for s in decision.signals[1:]]
    message = (
        f"started TrainingRun {run['metadata']['name']} for {decision.reason}: "
        f"{decision.signals[0].detail}" + (f"; also folded in: {', '.join(also)}" if also else "")
    )
    events.normal(tick.body, Reason.RETRAIN_TRIGGERED, message)
    tick.status.last_training_run = run["metadata"]["name"]
    tick.status.last_training_time = format_time(tick.now)
    return [run]


def _published(dataset: dict[str, Any] | None, version: str | None) -> dt.datetime | None:
    """When the Dataset published ``version`` (its ``status.versions`` entry), or None."""
    for entry in ((dataset or {}).get("status") or {}).get("versions") or []:
        if entry.get("id") == version and entry.get("created"):
            try:
                return dt.datetime.fromisoformat(str(entry["created"]))
            except ValueError:
                return None
    return None


def _versions(dataset: dict[str, Any] | None) -> list[tuple[str, dt.datetime]]:
    """The Dataset's listed versions as (id, published), skipping unreadable entries."""
    found = []
    for entry in ((dataset or {}).get("status") or {}).get("versions") or []:
        try:
            found.append((str(entry["id"]), dt.datetime.fromisoformat(str(entry["created"]))))
        except (KeyError, ValueError):
            continue
    return found


def _start_run(tick: Tick, decision: retrain.Decision, dataset_version: str) -> dict[str, Any]:
    spec = tick.spec.training.model_dump(by_alias=True, exclude_none=True, mode="json")
    # Pinned: the run trains exactly the version that triggered it (lineage).
    spec["datasetRef"]["version"] = dataset_version
    spec.update(reason=decision.reason, modelRef={"name": tick.name})
    # A run for drift learns mostly from what the fleet uploaded since the drift began;
    # the baseline version that tells those rows apart is pinned in its spec (lineage).
    selected = retrain.field_data(
        decision.reason, tick.status.drift, _versions(tick.observed.dataset), dataset_version
    )
    if selected is not None:
        spec["fieldData"] = selected
    manifest = {
        "apiVersion": API_VERSION,
        "kind": TRAINING_RUN,
        "metadata": {
            "name": f"{tick.name}-r{decision.state.run_counter}",
            "labels": {Labels.MANAGED_BY: Labels.MANAGED_BY_VALUE, Labels.MODEL: tick.name},
            "annotations": {REASONS_ANNOTATION: ",".join(decision.reasons)},
            "ownerReferences": [promotion.owner_reference(dict(tick.body))],
        },
        "spec": spec,
    }
    run, _ = apply.apply_owned(tick.namespace, manifest, update=False)
    return run


# --- status -------------------------------------------------------------------------------


def _ready(tick: Tick, active: list[dict[str, Any]]) -> None:
    if ConditionType.READY not in tick.conditions:
        training = [(r["metadata"]["name"], (r.get("spec") or {}).get("reason")) for r in active]
        tick.conditions[ConditionType.READY] = registry.readiness(tick.status, training)


def _condition_message(obj: dict[str, Any], type_: str) -> str | None:
    cond = get_condition((obj.get("status") or {}).get("conditions"), type_)
    return None if cond is None else str(cond.get("message") or cond.get("reason") or "")


def _write(
    patch: kopf.Patch,
    old: dict[str, Any],
    status: EdgeModelStatus,
    generation: int | None,
    now: dt.datetime,
    updates: Verdicts,
    *,
    drift: bool = False,
    dropped: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Patches only the keys that changed, so an idle model costs no API writes.
    ``status.drift`` only when ``drift`` (the monitor measured in this pass): otherwise a
    summary written by hand meanwhile would be overwritten with the stale one read."""
    conditions = update_conditions(
        old.get("conditions"), updates, generation, now, ensure=CONDITION_TYPES
    )
    new = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    new["conditions"] = [c for c in conditions if c["type"] not in dropped]
    new["observedGeneration"] = generation
    # An unchanged condition must not count as a change: its list was rebuilt above.
    for key in set(new) | set(old):
        if key == "drift" and not drift:
            continue
        if new.get(key) != old.get(key):
            patch.status[key] = _replacing(old.get(key), new.get(key))


def _replacing(old: Any, new: Any) -> Any:
    """``new`` as a merge-patch value that *replaces* ``old``: a merge patch merges objects
    key by key, so a key ``new`` lacks (``status.drift.driftSince`` after a NoDrift
    measurement) would otherwise survive from ``old``; it is sent as null, which deletes it."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    gone: dict[str, Any] = dict.fromkeys(set(old) - set(new))
    return {**gone, **{k: _replacing(old.get(k), v) for k, v in new.items()}}
