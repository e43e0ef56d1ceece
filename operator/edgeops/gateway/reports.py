"""``POST /v1/devices/{namespace}/{name}/status``: what the device runs and how its update
goes. Each report is one compare-and-swap write of Device status: the report's sequence
(``status.sequence``, what makes a replay to any replica fail), the fields that changed,
and ``lastSeen`` at most once per ``gateway_last_seen_seconds``.

When ``status.update`` moves into a terminal phase (Committed, RolledBack, Failed,
TimedOut) for a new (target version, attempt), the write is counted once in
``edgeops_device_update_outcomes_total`` (:mod:`edgeops.metrics.fleet`). Its ``model`` and
``version`` labels come from what the device says, so they are bounded: a model that is no
EdgeModel of the namespace, or a version its registry does not list, is ``other``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from edgeops.api.common import format_time
from edgeops.api.device import TERMINAL_UPDATE_PHASES
from edgeops.api.wire import StatusAnswer, StatusReport
from edgeops.gateway.context import (
    ApiError,
    Gateway,
    enrollment_state,
    json_body,
    parse_body,
)
from edgeops.gateway.desired import assignment
from edgeops.gateway.profiles import version_entry

#: What makes a reported update another one (rather than more detail on the same).
UPDATE_IDENTITY = ("targetVersion", "phase", "attempt")


def router(gw: Gateway) -> APIRouter:
    """The status-report endpoint."""
    api = APIRouter()

    @api.post(
        "/v1/devices/{namespace}/{name}/status",
        openapi_extra=json_body(StatusReport),
        responses={200: {"model": StatusAnswer}},
    )
    async def report(request: Request, namespace: str, name: str) -> Response:
        body = await gw.read_body(request)
        device = await gw.signed_device(request, namespace, name, body)
        # Like every other endpoint: a device nobody approved writes nothing (no health, no
        # version, no update outcome in Events or metrics).
        device = await gw.approved_device(device)
        req = parse_body(StatusReport, body)
        return await run_in_threadpool(_report, namespace, name, device, req)

    def _report(namespace: str, name: str, device: dict[str, Any], req: StatusReport) -> Response:
        outcome: list[str] = []
        changed: list[str] = []

        rollout = _rollout_of(namespace, name, device, req)

        def changes(status: dict[str, Any]) -> dict[str, Any]:
            # Decided on the status the write goes over (again after a lost race).
            wanted, terminal = wanted_status(device, status, req, gw.wall_clock(), rollout)
            outcome[:] = [terminal] if terminal else []
            diff = {k: v for k, v in wanted.items() if status.get(k) != v}
            changed[:] = sorted(diff)
            return diff

        before = device.get("status") or {}
        written = gw.take_sequence(device, req.sequence, changes)
        if outcome and req.update is not None:
            # Counted after the write, so a failed write (the device retries) is not
            # counted twice.
            model, version = _outcome_labels(namespace, req, before, written)
            gw.telemetry.add_update_outcome(namespace, model, version, outcome[0])
        return JSONResponse({"sequence": req.sequence, "written": changed})

    def _rollout_of(
        namespace: str, name: str, device: dict[str, Any], req: StatusReport
    ) -> str | None:
        """The FleetRollout that assigns the version ``req`` says the device runs, if one
        does (what status.rollout records when the version changes; lineage shows it)."""
        if req.version is None:
            return None
        try:
            choice, _, _ = assignment(gw, namespace, name, device)
        except ApiError:
            return None
        return choice.rollout if choice.version == req.version else None

    def _outcome_labels(
        namespace: str, req: StatusReport, status: dict[str, Any], device: dict[str, Any]
    ) -> tuple[str, str]:
        """(model, version) labels of an update outcome, ``other`` for what the namespace's
        EdgeModels do not know (the values are the device's word: never unbounded)."""
        assert req.update is not None
        labels = (device.get("metadata") or {}).get("labels") or {}
        claimed = req.model or status.get("model") or labels.get("edgeops.dev/model")
        models = {m["metadata"]["name"]: m for m in gw.fleet.models(namespace)}
        if claimed not in models:
            return "other", "other"
        target = req.update.target_version
        known = version_entry(models[claimed], target) is not None
        return str(claimed), str(target) if known else "other"

    return api


def wanted_status(
    device: dict[str, Any],
    status: dict[str, Any],
    req: StatusReport,
    now: float,
    rollout: str | None = None,
) -> tuple[dict[str, Any], str | None]:
    """The status fields ``req`` asks for over the stored ``status`` (unchanged ones
    included; the caller keeps those that differ), and the terminal update phase it enters,
    if it enters one (:func:`_terminal_transition`). ``now`` is Unix seconds; ``rollout``
    the FleetRollout assigning the reported version (None: none does), recorded as
    status.rollout when the version changes."""
    wanted: dict[str, Any] = {}
    if req.agent_version is not None:
        wanted["agentVersion"] = req.agent_version
    if req.model is not None:
        wanted["model"] = req.model
    if req.version is not None:
        wanted["version"] = req.version
        if req.version != status.get("version"):
            wanted["rollout"] = rollout
    if req.health is not None:
        wanted["health"] = req.health
    if req.slots is not None:
        wanted["slots"] = req.slots.model_dump(by_alias=True, exclude_none=True)
    outcome: str | None = None
    if req.update is not None:
        update = req.update.model_dump(by_alias=True, exclude_none=True)
        old = status.get("update") or {}
        # Agents repeat their last outcome in every status report, without the message
        # they sent with it once: only a value that differs is a change (else every
        # report would rewrite the Device).
        if any(old.get(k) != v for k, v in update.items()):
            update["time"] = format_time(datetime.fromtimestamp(now, UTC))
            same = all(old.get(k) == update.get(k) for k in UPDATE_IDENTITY)
            # Another version, phase or attempt: the write is a merge patch, which keeps
            # keys it does not name, so null the previous phase's reasonCode and message
            # (a Committed retry must not show its interrupted attempt's reason).
            cleared = {} if same else {k: None for k in old if k not in update}
            wanted["update"] = {**old, **cleared, **update}
            if _terminal_transition(old, update):
                outcome = str(update["phase"])
    state = enrollment_state(device.get("spec") or {})
    if status.get("enrollment") != state:
        wanted["enrollment"] = state
    return wanted, outcome


def _terminal_transition(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``new`` (a status.update) is a terminal phase that ``old`` was not already in
    for the same target version and attempt: a re-sent terminal report with another message
    is not a second outcome."""
    if new.get("phase") not in TERMINAL_UPDATE_PHASES:
        return False
    fields = ("phase", "targetVersion", "attempt")
    return tuple(old.get(f) for f in fields) != tuple(new.get(f) for f in fields)
