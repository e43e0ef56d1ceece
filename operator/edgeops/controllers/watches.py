"""What the controllers read, kept in memory by watches: Kopf indexes, and who wakes whom.

Kopf lists and watches each resource once and keeps these indexes current; handlers read
them as keyword arguments, so a reconcile reads a Job, a Dataset or a model's TrainingRuns
without an API call. Kopf starts no daemon before every index is filled, so a restarted
operator never mistakes "not listed yet" for "does not exist".

Wakeups follow ownership and references, like controller-runtime's ``Owns``/``Watches``:
a training or evaluation Job or pod wakes its TrainingRun (evaluation Jobs run in the
operator's namespace, labelled with the run's); a collection Job or pod wakes its Dataset;
a TrainingRun wakes its EdgeModel; a Dataset wakes the EdgeModels and unfinished
TrainingRuns that use it; an InferenceService wakes its EdgeModel. Every handler here is
``async`` so it runs in the event loop, not a thread.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from edgeops.api.conditions import get_condition
from edgeops.api.constants import (
    DATASET,
    DATASETS,
    DEVICE,
    DEVICES,
    EDGE_MODEL,
    EDGE_MODELS,
    FLEET_ROLLOUT,
    FLEET_ROLLOUTS,
    GROUP,
    TRAINING_RUN,
    TRAINING_RUNS,
    VERSION,
    ConditionType,
    Labels,
)
from edgeops.api.edgemodel import DriftSummary
from edgeops.controllers.reconciler import wake
from edgeops.metrics import drift as drift_metrics
from edgeops.metrics.operator import OBJECTS
from edgeops.policy import retention
from edgeops.policy.serving import INFERENCE_SERVICES, ISVC_VERSION, KSERVE_GROUP
from edgeops.settings import settings

Key = tuple[str, str]


def _copy(body: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


def _label(body: Mapping[str, Any], key: str) -> str | None:
    value = ((body.get("metadata") or {}).get("labels") or {}).get(key)
    return None if value is None else str(value)


def items(index: kopf.Index[Key, Any], key: Key) -> list[Any]:
    """The values an index holds under ``key`` (a copy; empty when none)."""
    store = index.get(key)
    return [] if store is None else list(store)


def first(index: kopf.Index[Key, Any], key: Key) -> Any | None:
    """The one value an index holds under ``key``, or None."""
    values = items(index, key)
    return values[0] if values else None


# --- indexes --------------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, TRAINING_RUNS)
async def trainingruns_by_model(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, dict[str, Any]] | None:
    """(namespace, model) -> the TrainingRuns labelled with that EdgeModel."""
    model = _label(body, Labels.MODEL)
    return {(namespace, model): _copy(body)} if model and namespace else None


@kopf.index(GROUP, VERSION, TRAINING_RUNS)
async def trainingruns_by_dataset(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[Key, str] | None:
    """(namespace, dataset) -> names of the TrainingRuns that train on it."""
    dataset = (spec.get("datasetRef") or {}).get("name")
    return {(namespace, str(dataset)): name} if dataset and namespace else None


@kopf.index(GROUP, VERSION, DATASETS)
async def datasets(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Key, Any] | None:
    """(namespace, name) -> the Dataset."""
    return {(namespace, name): _copy(body)} if namespace else None


@kopf.index(GROUP, VERSION, EDGE_MODELS)
async def edgemodels_by_dataset(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[Key, str] | None:
    """(namespace, dataset) -> names of the EdgeModels whose training template uses it."""
    dataset = ((spec.get("training") or {}).get("datasetRef") or {}).get("name")
    return {(namespace, str(dataset)): name} if dataset and namespace else None


def _evaluation(namespace: str | None, body: Mapping[str, Any]) -> bool:
    return _label(body, Labels.JOB_ROLE) == Labels.JOB_ROLE_EVALUATE


def _evaluation_key(namespace: str | None, body: Mapping[str, Any]) -> Key | None:
    """(run namespace, run) of an evaluation Job or pod, or None for one outside the
    operator's namespace: only the operator creates Jobs there, so a Job a tenant labels
    as an evaluation in its own namespace is never taken for one."""
    run = _label(body, Labels.TRAINING_RUN)
    run_namespace = _label(body, Labels.TRAINING_RUN_NAMESPACE)
    if namespace != settings().namespace or not run or not run_namespace:
        return None
    return (run_namespace, run)


@kopf.index("batch", "v1", "jobs", labels={Labels.TRAINING_RUN: kopf.PRESENT})
async def training_jobs(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, Any] | None:
    """(namespace, run) -> the training Job of that TrainingRun."""
    run = _label(body, Labels.TRAINING_RUN)
    if _evaluation(namespace, body):
        return None
    return {(namespace, run): _copy(body)} if run and namespace else None


@kopf.index("", "v1", "pods", labels={Labels.TRAINING_RUN: kopf.PRESENT})
async def training_pods(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, Any] | None:
    """(namespace, run) -> the pods of that TrainingRun's training Job."""
    run = _label(body, Labels.TRAINING_RUN)
    if _evaluation(namespace, body):
        return None
    return {(namespace, run): _copy(body)} if run and namespace else None


@kopf.index("batch", "v1", "jobs", labels={Labels.JOB_ROLE: Labels.JOB_ROLE_EVALUATE})
async def evaluation_jobs(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, Any] | None:
    """(run namespace, run) -> the evaluation Jobs in the operator's namespace."""
    key = _evaluation_key(namespace, body)
    return {key: _copy(body)} if key else None


@kopf.index("", "v1", "pods", labels={Labels.JOB_ROLE: Labels.JOB_ROLE_EVALUATE})
async def evaluation_pods(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, Any] | None:
    """(run namespace, run) -> the pods of its evaluation Jobs (operator's namespace)."""
    key = _evaluation_key(namespace, body)
    return {key: _copy(body)} if key else None


def _collection_key(namespace: str | None, body: Mapping[str, Any]) -> Key | None:
    dataset = _label(body, Labels.DATASET)
    return (namespace, dataset) if namespace and dataset else None


@kopf.index("batch", "v1", "jobs", labels={Labels.JOB_ROLE: Labels.JOB_ROLE_COLLECT})
async def collection_jobs(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, Any] | None:
    """(namespace, dataset) -> that Dataset's collection Jobs (finished ones until their
    TTL removes them)."""
    key = _collection_key(namespace, body)
    return {key: _copy(body)} if key else None


@kopf.index("", "v1", "pods", labels={Labels.JOB_ROLE: Labels.JOB_ROLE_COLLECT})
async def collection_pods(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, Any] | None:
    """(namespace, dataset) -> the pods of that Dataset's collection Jobs."""
    key = _collection_key(namespace, body)
    return {key: _copy(body)} if key else None


@kopf.index(GROUP, VERSION, EDGE_MODELS)
async def dataset_versions_models_use(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, retention.Uses] | None:
    """(namespace, "") -> the dataset versions each EdgeModel keeps from retention and
    deletion, each with who uses it ("EdgeModel m v3 (Approved)"), for the Events."""
    return {(namespace, ""): retention.model_uses(body)} if namespace else None


@kopf.index(GROUP, VERSION, TRAINING_RUNS)
async def dataset_versions_runs_use(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, retention.Uses] | None:
    """(namespace, "") -> the dataset version each unfinished TrainingRun trains on."""
    return {(namespace, ""): retention.run_uses(body)} if namespace else None


def dataset_version_uses(namespace: str, indexes: Mapping[str, Any]) -> retention.Uses:
    """Every dataset version the namespace's EdgeModels and unfinished TrainingRuns use,
    with who uses it. Call it in the event loop (indexes change under a thread)."""
    found: list[retention.Uses] = []
    for index in ("dataset_versions_models_use", "dataset_versions_runs_use"):
        found.extend(items(indexes[index], (namespace, "")))
    return retention.merge_uses(found)


@kopf.index(KSERVE_GROUP, ISVC_VERSION, INFERENCE_SERVICES)
async def inference_services(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Key, Any] | None:
    """(namespace, name) -> the KServe InferenceService (absent when KServe is not
    installed: Kopf watches only resources the API server serves)."""
    return {(namespace, name): _copy(body)} if namespace else None


# --- wakeups ------------------------------------------------------------------------------


def _wake_run(namespace: str | None, body: kopf.Body) -> None:
    if _evaluation(namespace, body):
        key = _evaluation_key(namespace, body)
        if key is not None:
            wake(TRAINING_RUNS, *key)
        return
    wake(TRAINING_RUNS, namespace, _label(body, Labels.TRAINING_RUN))


@kopf.on.event("batch", "v1", "jobs", labels={Labels.TRAINING_RUN: kopf.PRESENT})
async def job_changed(namespace: str | None, body: kopf.Body, **_: Any) -> None:
    _wake_run(namespace, body)


@kopf.on.event("", "v1", "pods", labels={Labels.TRAINING_RUN: kopf.PRESENT})
async def pod_changed(namespace: str | None, body: kopf.Body, **_: Any) -> None:
    _wake_run(namespace, body)


@kopf.on.event("batch", "v1", "jobs", labels={Labels.JOB_ROLE: Labels.JOB_ROLE_COLLECT})
async def collection_job_changed(namespace: str | None, body: kopf.Body, **_: Any) -> None:
    wake(DATASETS, namespace, _label(body, Labels.DATASET))


@kopf.on.event("", "v1", "pods", labels={Labels.JOB_ROLE: Labels.JOB_ROLE_COLLECT})
async def collection_pod_changed(namespace: str | None, body: kopf.Body, **_: Any) -> None:
    wake(DATASETS, namespace, _label(body, Labels.DATASET))


@kopf.on.event(GROUP, VERSION, TRAINING_RUNS)
async def trainingrun_changed(
    namespace: str | None, body: kopf.Body, type: str | None, **_: Any
) -> None:
    wake(EDGE_MODELS, namespace, _label(body, Labels.MODEL))
    _count(TRAINING_RUN, body, type, (body.get("status") or {}).get("phase") or "Pending")


@kopf.on.event(GROUP, VERSION, DATASETS)
async def dataset_changed(
    namespace: str | None,
    name: str,
    body: kopf.Body,
    type: str | None,
    **indexes: Any,
) -> None:
    if namespace is not None:
        for model in items(indexes["edgemodels_by_dataset"], (namespace, name)):
            wake(EDGE_MODELS, namespace, model)
        for run in items(indexes["trainingruns_by_dataset"], (namespace, name)):
            wake(TRAINING_RUNS, namespace, run)
    _count(DATASET, body, type, _ready(body))


@kopf.on.event(GROUP, VERSION, EDGE_MODELS)
async def edgemodel_changed(body: kopf.Body, type: str | None, **_: Any) -> None:
    _count(EDGE_MODEL, body, type, _ready(body))
    _drift_series(body, type)


# Counted for the alerts (a paused or aborted rollout; unhealthy or silent devices): the
# phase the FleetRollout controller wrote, the health the Device controller wrote.
@kopf.on.event(GROUP, VERSION, FLEET_ROLLOUTS, id="count-fleetrollouts")
async def fleetrollout_counted(body: kopf.Body, type: str | None, **_: Any) -> None:
    _count(FLEET_ROLLOUT, body, type, (body.get("status") or {}).get("phase") or "Pending")


@kopf.on.event(GROUP, VERSION, DEVICES, id="count-devices")
async def device_counted(body: kopf.Body, type: str | None, **_: Any) -> None:
    _count(DEVICE, body, type, (body.get("status") or {}).get("health") or "Unknown")


@kopf.on.event(KSERVE_GROUP, ISVC_VERSION, INFERENCE_SERVICES)
async def inference_service_changed(namespace: str | None, name: str, **_: Any) -> None:
    wake(EDGE_MODELS, namespace, name)  # an InferenceService is named after its model


# --- objects by kind and phase --------------------------------------------------------------

_phases: dict[tuple[str, str], str] = {}


def _ready(body: Mapping[str, Any]) -> str:
    condition = get_condition((body.get("status") or {}).get("conditions"), ConditionType.READY)
    return f"Ready={condition.get('status')}" if condition else "Ready=Unknown"


def _count(kind: str, body: Mapping[str, Any], event: str | None, phase: str) -> None:
    """Keeps ``edgeops_operator_objects{kind, phase}`` equal to what the watch shows
    (``event`` is the watch event type; DELETED removes the object)."""
    uid = str((body.get("metadata") or {}).get("uid"))
    old = _phases.pop((kind, uid), None)
    if old is not None:
        OBJECTS.labels(kind=kind, phase=old).dec()
    if event != "DELETED":
        _phases[(kind, uid)] = phase
        OBJECTS.labels(kind=kind, phase=phase).inc()


# --- drift as series -------------------------------------------------------------------------


def _drift_series(body: Mapping[str, Any], event: str | None) -> None:
    """Keeps the ``edgeops_model_drift_*`` series (:mod:`edgeops.metrics.drift`) equal to
    the EdgeModel's ``status.drift`` as the drift monitor wrote it; a model deleted or with
    ``onDrift`` off has none."""
    meta = body.get("metadata") or {}
    namespace, model = str(meta.get("namespace")), str(meta.get("name"))
    on_drift = ((body.get("spec") or {}).get("retrain") or {}).get("onDrift") or {}
    drift = (body.get("status") or {}).get("drift")
    summary = None
    if event != "DELETED" and on_drift.get("enabled") and isinstance(drift, Mapping):
        try:
            summary = DriftSummary.model_validate(drift)
        except ValidationError:
            summary = None  # a status written by another version: no series rather than wrong ones
    drift_metrics.publish(namespace, model, summary)
