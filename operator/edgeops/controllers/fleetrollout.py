"""FleetRollout controller: moves the devices a rollout selects to its version in steps.

``reconcile_fleetrollout`` is the rollout's one reconciler and status writer
(:mod:`edgeops.controllers.reconciler`). Each pass: parse the spec, measure the analysis
metrics that are due (:mod:`edgeops.metrics.prometheus`), decide with
:func:`edgeops.policy.rollout.decide`, write the status once and post one Event per
decision. It returns the next moment a decision can change without a watch event (a
device timeout, a pause or bake end, a step deadline, the next measurement).

Nothing is listed per pass. Three Kopf indexes keep what it reads in memory:

- :func:`rollout_devices`: a slim :class:`~edgeops.policy.rollout.FleetDevice` per Device,
  keyed by (namespace, its ``edgeops.dev/model`` label or ""), so a rollout reads only the
  devices of its model and the unlabelled ones;
- :func:`fleetrollout_views`: every rollout of a namespace as the gateway sees it
  (:func:`edgeops.policy.desired.rollout_view`), for "the newest rollout selecting a device
  governs it";
- :func:`edgemodel_infos`: the EdgeModel's current version, deployable versions and targets.

Wakeups: a Device change that matters to counting (labels, approval, version, update
phase; not a lastSeen refresh, which the resync picks up for the offline count) wakes the
rollouts of its namespace and model; an EdgeModel change wakes its rollouts.

The fleet's version is the rollout's status (phase Succeeded, targetVersion); the
EdgeModel controller, the one writer of the model's status, reads it from
:func:`fleetrollout_views` and records ``status.fleetVersion`` (a phase change wakes it).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, Final

import kopf
from pydantic import ValidationError

from edgeops.api.common import describe_validation_error, format_time
from edgeops.api.conditions import update_conditions
from edgeops.api.constants import (
    DEVICES,
    EDGE_MODELS,
    FLEET_ROLLOUT,
    FLEET_ROLLOUTS,
    GROUP,
    VERSION,
    ConditionType,
    Labels,
    Reason,
)
from edgeops.api.edgemodel import Target
from edgeops.api.fleetrollout import FleetRolloutSpec, FleetRolloutStatus, HandOver
from edgeops.controllers import events, reconciler
from edgeops.controllers.watches import Key, first, items
from edgeops.metrics.prometheus import Prometheus, QueryContext, measure
from edgeops.policy import desired
from edgeops.policy import rollout as policy
from edgeops.policy.handoff import handoff, handoff_message, merge_hand_overs
from edgeops.policy.promql import query_errors
from edgeops.settings import gateway_settings, settings

log = logging.getLogger(__name__)

#: Version states a device may be given (Rejected and Retired versions never are).
DEPLOYABLE_STATES: Final = frozenset({"Candidate", "Approved"})
#: Status keys the controller owns (a key it no longer sets is deleted with null).
_STATUS_KEYS: Final = frozenset(
    info.alias or name for name, info in FleetRolloutStatus.model_fields.items()
)

#: (namespace, device) -> what last woke the rollouts about it (see device_changed).
_fingerprints: dict[Key, tuple[Any, ...]] = {}


# --- indexes --------------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, DEVICES)
async def rollout_devices(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, policy.FleetDevice] | None:
    """(namespace, model label or "") -> the Device as a rollout counts it."""
    if not namespace:
        return None
    device = policy.fleet_device(body)
    return {(namespace, device.labels.get(Labels.MODEL, "")): device}


@kopf.index(GROUP, VERSION, FLEET_ROLLOUTS)
async def fleetrollout_views(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, desired.RolloutView] | None:
    """(namespace, "") -> every readable FleetRollout of the namespace."""
    view = desired.rollout_view(body)
    return {(namespace, ""): view} if namespace and view is not None else None


def model_info(body: Any) -> policy.ModelInfo:
    """What a rollout needs of an EdgeModel object: current version, deployable versions
    (signed, Candidate or Approved) and targets (unreadable targets are left out)."""
    status = body.get("status") or {}
    versions = frozenset(
        int(v["number"])
        for v in status.get("versions") or ()
        if isinstance(v, dict) and v.get("signature") and v.get("state") in DEPLOYABLE_STATES
    )
    targets: list[Target] = []
    for raw in (body.get("spec") or {}).get("targets") or ():
        try:
            targets.append(Target.model_validate(raw))
        except ValidationError:
            continue
    current = status.get("currentVersion")
    return policy.ModelInfo(
        found=True,
        current_version=None if current is None else int(current),
        versions=versions,
        targets=tuple(targets),
    )


@kopf.index(GROUP, VERSION, EDGE_MODELS)
async def edgemodel_infos(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Key, policy.ModelInfo] | None:
    """(namespace, name) -> what a rollout needs of the EdgeModel."""
    return {(namespace, name): model_info(body)} if namespace else None


# --- wakeups ------------------------------------------------------------------------------


def _wake_rollouts(namespace: str, model: str | None, views: kopf.Index[Key, Any]) -> None:
    for view in items(views, (namespace, "")):
        if model is None or view.model == model:
            reconciler.wake(FLEET_ROLLOUTS, namespace, view.name)


@kopf.on.event(GROUP, VERSION, DEVICES, id="wake-fleetrollouts")
async def device_changed(
    type: str | None, namespace: str | None, name: str | None, body: kopf.Body, **kwargs: Any
) -> None:
    """Wakes the rollouts a Device change may concern: those of its namespace and model
    (every one of the namespace for an unlabelled device), only when something they count
    changed."""
    if not namespace or not name:
        return
    device = policy.fleet_device(body)
    key = (namespace, name)
    if type == "DELETED":
        _fingerprints.pop(key, None)
    else:
        fingerprint = (
            device.labels, device.eligible, device.version, device.update_target,
            device.update_phase, device.update_time, device.target_type, device.hardware,
        )  # fmt: skip
        if _fingerprints.get(key) == fingerprint:
            return
        _fingerprints[key] = fingerprint
    _wake_rollouts(namespace, device.labels.get(Labels.MODEL), kwargs["fleetrollout_views"])


@kopf.on.event(GROUP, VERSION, EDGE_MODELS, id="wake-fleetrollouts-of-model")
async def edgemodel_changed(namespace: str | None, name: str | None, **kwargs: Any) -> None:
    """A new version or a new current version may start or change a rollout."""
    if namespace and name:
        _wake_rollouts(namespace, name, kwargs["fleetrollout_views"])


#: uid -> the phase last seen of each FleetRollout (see rollout_phase_changed).
_phases: dict[str, str | None] = {}


@kopf.on.event(GROUP, VERSION, FLEET_ROLLOUTS, id="wake-edgemodel-of-fleetrollout")
async def rollout_phase_changed(
    type: str | None, namespace: str | None, body: kopf.Body, **_: Any
) -> None:
    """A rollout that changes phase (e.g. Succeeded) wakes its EdgeModel, which records the
    version the fleet runs."""
    uid = str((body.get("metadata") or {}).get("uid"))
    model = ((body.get("spec") or {}).get("modelRef") or {}).get("name")
    if type == "DELETED":
        # A deleted rollout may be the one status.fleetRollout names: the model recomputes.
        _phases.pop(uid, None)
        _hand_overs.pop(uid, None)
        reconciler.wake(EDGE_MODELS, namespace, model)
        return
    phase = (body.get("status") or {}).get("phase")
    if _phases.get(uid, "") == phase:
        return
    _phases[uid] = phase
    reconciler.wake(EDGE_MODELS, namespace, model)


#: taker uid -> hand-overs noted by rollout_deleted; the taker's pass records them in
#: status.handedOver (the reconciler is the one status writer). Lost if the operator
#: restarts before that pass (it runs at once: the handler wakes the taker).
_hand_overs: dict[str, list[HandOver]] = {}


@kopf.on.event(GROUP, VERSION, FLEET_ROLLOUTS, id="hand-over-devices-of-deleted-fleetrollout")
async def rollout_deleted(
    type: str | None, namespace: str | None, body: kopf.Body, **kwargs: Any
) -> None:
    """A deleted rollout's devices follow what governs them next (an older rollout of
    their model, else the model's currentVersion): one Event with the numbers
    (:func:`edgeops.policy.handoff.handoff`) on the deleted rollout, where ``kubectl get
    events`` still lists it, and on each rollout that takes devices over; those are woken
    to count them. No finalizer: deleting a rollout must not wait for the operator (a
    rollout deleted while it is down hands its devices over all the same, unannounced)."""
    if type != "DELETED" or not namespace:
        return
    deleted = desired.rollout_view(body)
    if deleted is None:
        return
    remaining = [
        r for r in items(kwargs["fleetrollout_views"], (namespace, "")) if r.uid != deleted.uid
    ]
    index = kwargs["rollout_devices"]
    devices = items(index, (namespace, deleted.model)) + items(index, (namespace, ""))
    current: dict[str, int | None] = {}
    for name in {deleted.model, *(r.model for r in remaining)}:
        info = first(kwargs["edgemodel_infos"], (namespace, name))
        current[name] = None if info is None else info.current_version
    result = handoff(deleted, remaining, devices, current)
    # Noted before any await: a taker's pass must not count the devices back without it.
    record = HandOver(
        rollout=deleted.name, selector=deleted.selector, at=format_time(dt.datetime.now(dt.UTC))
    )
    for group in result.groups:
        taker = next((r for r in remaining if r.name == group.rollout), None)
        if taker is not None:
            _hand_overs.setdefault(taker.uid, []).append(record)
    message = handoff_message(deleted, result, remaining)
    log.info("FleetRollout %s/%s deleted: %s", namespace, deleted.name, message)
    events.normal(_rollout_ref(namespace, deleted), Reason.DEVICES_HANDED_OVER, message)
    for group in result.groups:
        taker = next((r for r in remaining if r.name == group.rollout), None)
        if taker is None:
            continue
        events.normal(_rollout_ref(namespace, taker), Reason.DEVICES_HANDED_OVER, message)
        reconciler.wake(FLEET_ROLLOUTS, namespace, taker.name)


def _rollout_ref(namespace: str, view: desired.RolloutView) -> dict[str, Any]:
    """What an Event needs of a FleetRollout it is about."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": FLEET_ROLLOUT,
        "metadata": {"name": view.name, "namespace": namespace, "uid": view.uid},
    }


# --- reconcile ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """What a rollout's pass reads from the indexes."""

    devices: list[policy.FleetDevice] = field(default_factory=list)
    rollouts: list[desired.RolloutView] = field(default_factory=list)
    model: policy.ModelInfo = field(default_factory=lambda: policy.ModelInfo(found=False))
    hand_overs: list[HandOver] = field(default_factory=list)


def _gather(
    namespace: str,
    body: dict[str, Any],
    rollout_devices: kopf.Index[Key, Any],
    fleetrollout_views: kopf.Index[Key, Any],
    edgemodel_infos: kopf.Index[Key, Any],
    **_: Any,
) -> Observed:
    model = str(((body.get("spec") or {}).get("modelRef") or {}).get("name") or "")
    devices = items(rollout_devices, (namespace, model)) + items(rollout_devices, (namespace, ""))
    info = first(edgemodel_infos, (namespace, model))
    return Observed(
        devices=devices,
        rollouts=items(fleetrollout_views, (namespace, "")),
        model=info if info is not None else policy.ModelInfo(found=False),
        hand_overs=list(_hand_overs.get(str((body.get("metadata") or {}).get("uid")), ())),
    )


def _prometheus() -> Prometheus:
    config = settings()
    return Prometheus(config.prometheus_url, config.prometheus_timeout_seconds)


@reconciler.controller(FLEET_ROLLOUTS, FLEET_ROLLOUT, gather=_gather)
def reconcile_fleetrollout(
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
    """One pass over the rollout (see the module docstring); status goes into ``patch``.
    Returns the seconds until the next decision may be due, or None."""
    if namespace is None or meta.get("deletionTimestamp"):
        return None
    now = dt.datetime.now(dt.UTC)
    seen = observed or Observed()
    old = dict(status)
    generation = meta.get("generation")
    try:
        parsed = FleetRolloutSpec.model_validate(dict(spec))
        message = "; ".join(query_errors(dict(spec)))
    except ValidationError as error:
        message = describe_validation_error(error)
    if message:
        verdicts = {ConditionType.READY: ("False", Reason.INVALID_SPEC, message)}
        patch.status["conditions"] = update_conditions(
            old.get("conditions"), verdicts, generation, now, ensure=policy.CONDITION_TYPES
        )
        return None
    try:
        current = FleetRolloutStatus.model_validate(old)
    except ValidationError:
        # A status written by hand that the model refuses: start over rather than stall.
        log.warning("FleetRollout %s/%s: unreadable status, starting over", namespace, name)
        current = FleetRolloutStatus()
    if seen.hand_overs:
        current.handed_over = merge_hand_overs(current.handed_over, seen.hand_overs)
    view = policy.own_view(name, str(meta.get("uid")), str(meta.get("creationTimestamp") or ""),
                           parsed, current)  # fmt: skip
    measurements = []
    due = policy.due_metrics(parsed, current, now)
    if due and parsed.analysis is not None:
        prometheus = _prometheus()
        context = QueryContext(namespace, parsed.model_ref.name, parsed.version,
                               current.stable_version)  # fmt: skip
        measurements = [
            measure(prometheus, metric, context, parsed.analysis.interval, now) for metric in due
        ]
    decision = policy.decide(
        parsed, current, view, seen.rollouts, seen.devices, seen.model, measurements, now,
        gateway_settings().gateway_last_seen_seconds,
    )  # fmt: skip
    wanted = decision.status.model_dump(by_alias=True, exclude_none=True, mode="json")
    wanted["observedGeneration"] = generation
    wanted["conditions"] = update_conditions(
        old.get("conditions"), decision.conditions, generation, now,
        ensure=policy.CONDITION_TYPES,
    )  # fmt: skip
    for key in _STATUS_KEYS:
        if key in old and key not in wanted:
            wanted[key] = None  # merge patch: null deletes a key the decision cleared
    for key, value in wanted.items():
        patch.status[key] = value
    for event in decision.events:
        post = events.normal if event.type == "Normal" else events.warning
        post(body, event.reason, event.message)
    return decision.requeue
