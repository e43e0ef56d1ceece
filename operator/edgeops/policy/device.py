"""What a Device's status should say, as pure functions of (spec, status, clock).

The Device controller (:mod:`edgeops.controllers.device`) and its periodic staleness sweep
both call :func:`evaluate` on a :class:`DeviceView` (the slim projection the controller's
Kopf index keeps per Device) and write what it returns. Conditions:

- ``Ready``: True when the device is approved, was seen within the staleness threshold and
  reports health Healthy or Degraded; False when it is Pending, Rejected, decommissioned or
  Unhealthy; Unknown when it never reported (NeverSeen), was last seen longer ago than the
  threshold (NotSeen) or reports no health.
- ``Enrolled``: True when spec.approval is Approved and the device is not decommissioned.
- ``Updated``: whether the last update the agent reported reached Committed (False for
  RolledBack, Failed, TimedOut; Unknown for none yet or one in flight). Named ``Updated``
  (past tense, about the last attempt) rather than ``UpToDate``: the version a device
  *should* run is the gateway's per-request choice from the FleetRollouts, which this
  controller does not compute.

The staleness threshold is 3 x max(spec.reportIntervalSeconds, the gateway's lastSeen write
interval): the gateway writes ``lastSeen`` at most once per write interval, so a device
reporting every 5 s may still show a lastSeen up to that interval old.

Messages hold the numbers behind each decision and are stable while nothing changes, so
re-evaluating an unchanged device yields no write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from edgeops.api.common import format_time, parse_time
from edgeops.api.conditions import Verdict, get_condition, update_conditions
from edgeops.api.constants import API_VERSION, DEVICE, ConditionType, Reason
from edgeops.api.device import TERMINAL_UPDATE_PHASES

#: A device is stale after this many report intervals without being seen.
MISSED_REPORTS: Final = 3
#: spec.reportIntervalSeconds when the spec has none (the CRD's default).
DEFAULT_REPORT_INTERVAL_SECONDS: Final = 60
CONDITION_TYPES: Final = (ConditionType.READY, ConditionType.ENROLLED, ConditionType.UPDATED)

#: Update phase -> (Updated status, reason, Event type) for the terminal phases.
_OUTCOMES: Final[dict[str, tuple[str, str, str]]] = {
    "Committed": ("True", Reason.UPDATE_COMMITTED, "Normal"),
    "RolledBack": ("False", Reason.UPDATE_ROLLED_BACK, "Warning"),
    "Failed": ("False", Reason.UPDATE_FAILED, "Warning"),
    "TimedOut": ("False", Reason.UPDATE_TIMED_OUT, "Warning"),
}
#: Enrolled reasons that are announced with an Event when they are reached, and its type.
_ANNOUNCED_ENROLLMENT: Final[dict[str, str]] = {
    Reason.APPROVED: "Normal",
    Reason.ENROLLMENT_REJECTED: "Warning",
    Reason.DECOMMISSIONED: "Normal",
}


@dataclass(frozen=True, slots=True)
class DeviceView:
    """The part of a Device the controller decides from (what its index keeps)."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    resource_version: str | None
    approval: str
    decommissioned: bool
    report_interval_seconds: int
    last_seen: str | None
    health: str | None
    enrollment: str | None
    observed_generation: int | None
    update: Mapping[str, Any] | None
    conditions: tuple[Mapping[str, Any], ...]

    def involved(self) -> dict[str, Any]:
        """A minimal object to post Kubernetes Events about this Device."""
        return {
            "apiVersion": API_VERSION,
            "kind": DEVICE,
            "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
        }


@dataclass(frozen=True)
class Announcement:
    """A Kubernetes Event to post once for a transition: type (Normal/Warning), reason
    (a :class:`edgeops.api.constants.Reason`) and message. ``key`` identifies the
    transition (the condition it comes from, and what it says) for de-duplication."""

    type: str
    reason: str
    message: str
    key: tuple[str, str]


@dataclass(frozen=True)
class Evaluation:
    """What to write: ``status`` holds only the top-level status keys whose value changes
    (empty: no write), ``announcements`` the Events due with it."""

    status: dict[str, Any]
    announcements: list[Announcement] = field(default_factory=list)


def view_of(body: Mapping[str, Any]) -> DeviceView:
    """The :class:`DeviceView` of a Device object (a Kopf body or a plain dict). Missing
    fields take the CRD's defaults; never raises for a well-formed object."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    update = status.get("update")
    return DeviceView(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        generation=meta.get("generation"),
        resource_version=meta.get("resourceVersion"),
        approval=str(spec.get("approval") or "Pending"),
        decommissioned=bool(spec.get("decommissioned")),
        report_interval_seconds=int(
            spec.get("reportIntervalSeconds") or DEFAULT_REPORT_INTERVAL_SECONDS
        ),
        last_seen=status.get("lastSeen"),
        health=status.get("health"),
        enrollment=status.get("enrollment"),
        observed_generation=status.get("observedGeneration"),
        update=dict(update) if isinstance(update, Mapping) else None,
        conditions=tuple(dict(c) for c in status.get("conditions") or ()),
    )


def enrollment_state(approval: str, decommissioned: bool) -> str:
    """``Revoked`` when decommissioned, else spec.approval (Pending, Approved, Rejected):
    the same rule the gateway applies when it writes status.enrollment, so the two writers
    never disagree."""
    return "Revoked" if decommissioned else approval


def staleness_threshold(report_interval_seconds: float, last_seen_write_seconds: float) -> float:
    """Seconds without being seen after which a device is stale:
    3 x max(report interval, the gateway's lastSeen write interval), both in seconds."""
    return MISSED_REPORTS * max(float(report_interval_seconds), float(last_seen_write_seconds))


def seconds_since_seen(view: DeviceView, now: datetime) -> float | None:
    """Seconds from status.lastSeen to ``now`` (never negative: a gateway clock ahead of
    ours counts as just seen); None when the device was never seen."""
    seen = parse_time(view.last_seen)
    return None if seen is None else max(0.0, (now - seen).total_seconds())


def is_stale(view: DeviceView, now: datetime, last_seen_write_seconds: float) -> bool:
    """Whether the device was seen, but longer ago than its staleness threshold."""
    age = seconds_since_seen(view, now)
    threshold = staleness_threshold(view.report_interval_seconds, last_seen_write_seconds)
    return age is not None and age > threshold


def needs_sweep(view: DeviceView, now: datetime, last_seen_write_seconds: float) -> bool:
    """Cheap pre-check for the periodic sweep: the device is stale and not yet marked so
    (health not Unknown, or an approved device whose Ready reason is not NotSeen). Only
    these are evaluated in full."""
    if not is_stale(view, now, last_seen_write_seconds):
        return False
    if view.health != "Unknown":
        return True
    ready = get_condition(view.conditions, ConditionType.READY)
    state = enrollment_state(view.approval, view.decommissioned)
    return state == "Approved" and (ready or {}).get("reason") != Reason.NOT_SEEN


def _threshold_text(view: DeviceView, last_seen_write_seconds: float) -> str:
    threshold = staleness_threshold(view.report_interval_seconds, last_seen_write_seconds)
    return (
        f"threshold {threshold:g} s = {MISSED_REPORTS} x max(reportIntervalSeconds "
        f"{view.report_interval_seconds}, gateway lastSeen interval {last_seen_write_seconds:g} s)"
    )


def readiness(
    view: DeviceView, now: datetime, last_seen_write_seconds: float
) -> tuple[Verdict, str | None]:
    """The Ready verdict and the health to show (``Unknown`` once stale, else the
    reported one). Enrollment decides first (Decommissioned, EnrollmentRejected,
    EnrollmentPending: False), then being seen (NeverSeen, NotSeen: Unknown), then the
    reported health (Healthy, Degraded: True; Unhealthy: False; none: Unknown)."""
    stale = is_stale(view, now, last_seen_write_seconds)
    health = "Unknown" if stale else view.health
    state = enrollment_state(view.approval, view.decommissioned)
    if state == "Revoked":
        return Verdict(
            "False",
            Reason.DECOMMISSIONED,
            "spec.decommissioned is true: the device is revoked and the gateway refuses "
            "every request it signs",
        ), health
    if state == "Rejected":
        return Verdict(
            "False",
            Reason.ENROLLMENT_REJECTED,
            "spec.approval is Rejected: the gateway refuses the device's requests",
        ), health
    if state != "Approved":
        return Verdict(
            "False",
            Reason.ENROLLMENT_PENDING,
            f"spec.approval is {state}: approve it (edgeops device approve {view.name}) "
            "for the gateway to serve it",
        ), health
    age = seconds_since_seen(view, now)
    threshold = _threshold_text(view, last_seen_write_seconds)
    if age is None:
        return Verdict(
            "Unknown",
            Reason.NEVER_SEEN,
            f"approved, but the device has not reported yet (no status.lastSeen); {threshold}",
        ), health
    if stale:
        prefix = f"last seen at {view.last_seen}, "
        old = get_condition(view.conditions, ConditionType.READY)
        if (
            old is not None
            and old.get("reason") == Reason.NOT_SEEN
            and str(old.get("message") or "").startswith(prefix)
        ):
            # Same lastSeen: keep the message (and its numbers) of when it went stale,
            # so the sweep writes nothing while the device stays away.
            return Verdict("Unknown", Reason.NOT_SEEN, str(old["message"])), health
        return Verdict(
            "Unknown",
            Reason.NOT_SEEN,
            f"{prefix}{age:.0f} s before {format_time(now)}; {threshold}; health is "
            "Unknown until the device reports again",
        ), health
    seen = f"last seen at {view.last_seen}, within the {threshold}"
    if health == "Healthy":
        return Verdict("True", Reason.HEALTHY, f"health Healthy; {seen}"), health
    if health == "Degraded":
        return Verdict("True", Reason.DEGRADED, f"health Degraded (still serving); {seen}"), health
    if health == "Unhealthy":
        return Verdict("False", Reason.UNHEALTHY, f"health Unhealthy; {seen}"), health
    return Verdict(
        "Unknown",
        Reason.HEALTH_NOT_REPORTED,
        f"the device reports no health (status.health {health or 'unset'}); {seen}",
    ), health


def enrolled(view: DeviceView) -> Verdict:
    """The Enrolled verdict from spec.approval and spec.decommissioned."""
    state = enrollment_state(view.approval, view.decommissioned)
    if state == "Approved":
        return Verdict(
            "True", Reason.APPROVED, "spec.approval is Approved: the gateway serves the device"
        )
    if state == "Revoked":
        return Verdict(
            "False",
            Reason.DECOMMISSIONED,
            f"spec.decommissioned is true (spec.approval {view.approval}): the device is revoked",
        )
    if state == "Rejected":
        return Verdict("False", Reason.ENROLLMENT_REJECTED, "spec.approval is Rejected")
    return Verdict("False", Reason.ENROLLMENT_PENDING, f"spec.approval is {state}")


def _update_text(update: Mapping[str, Any]) -> str:
    text = (
        f"v{update.get('targetVersion')} attempt {update.get('attempt', 1)}: {update.get('phase')}"
    )
    if update.get("reasonCode"):
        text += f" ({update['reasonCode']})"
    if update.get("time"):
        text += f" at {update['time']}"
    if update.get("message"):
        text += f": {update['message']}"
    return text


def updated(view: DeviceView) -> Verdict:
    """The Updated verdict from status.update: its phase, version, attempt, reason code,
    time and the agent's message (together they identify one outcome)."""
    update = view.update
    if not update or not update.get("phase"):
        return Verdict("Unknown", Reason.NO_UPDATE, "the device has reported no update yet")
    phase = str(update["phase"])
    if phase not in TERMINAL_UPDATE_PHASES:
        return Verdict("Unknown", Reason.UPDATE_IN_PROGRESS, _update_text(update))
    status, reason, _ = _OUTCOMES[phase]
    return Verdict(status, reason, _update_text(update))


def _announcements(
    view: DeviceView,
    verdicts: Mapping[str, Verdict],
    now: datetime,
    last_seen_write_seconds: float,
) -> list[Announcement]:
    """Events for transitions: a changed Enrolled reason that is Approved, Rejected or
    Decommissioned, and a changed Updated condition for a terminal phase. Compared with the
    conditions already in status, so an operator restart reposts nothing. Without an earlier
    condition (the first evaluation of a device) an enrollment decision is announced only if
    the gateway has not applied it to status.enrollment yet, and an update outcome only if
    it is more recent than the staleness threshold: old news is not announced."""
    found: list[Announcement] = []
    verdict = verdicts[ConditionType.ENROLLED]
    old = get_condition(view.conditions, ConditionType.ENROLLED)
    state = enrollment_state(view.approval, view.decommissioned)
    if verdict.reason in _ANNOUNCED_ENROLLMENT:
        fresh = old.get("reason") != verdict.reason if old is not None else view.enrollment != state
        if fresh:
            found.append(
                Announcement(
                    _ANNOUNCED_ENROLLMENT[verdict.reason],
                    verdict.reason,
                    verdict.message,
                    (ConditionType.ENROLLED, verdict.reason),
                )
            )
    verdict = verdicts[ConditionType.UPDATED]
    old = get_condition(view.conditions, ConditionType.UPDATED)
    phase = str((view.update or {}).get("phase"))
    if phase in _OUTCOMES:
        if old is not None:
            fresh = (old.get("reason"), old.get("message")) != (verdict.reason, verdict.message)
        else:
            when = parse_time(str((view.update or {}).get("time") or ""))
            horizon = staleness_threshold(view.report_interval_seconds, last_seen_write_seconds)
            fresh = when is not None and (now - when).total_seconds() <= horizon
        if fresh:
            found.append(
                Announcement(
                    _OUTCOMES[phase][2],
                    verdict.reason,
                    verdict.message,
                    (ConditionType.UPDATED, verdict.message),
                )
            )
    return found


def evaluate(view: DeviceView, now: datetime, last_seen_write_seconds: float) -> Evaluation:
    """The status keys to write for ``view`` at ``now`` (``now`` timezone-aware;
    ``last_seen_write_seconds`` the gateway's lastSeen write interval in seconds) and the
    Events due: ``status.enrollment`` (same rule as the gateway's), ``health`` (Unknown once
    stale), ``conditions`` (Ready, Enrolled, Updated via
    :func:`edgeops.api.conditions.update_conditions`) and ``observedGeneration``. Only keys
    whose value changes are returned; an unchanged device gives an empty status."""
    ready, health = readiness(view, now, last_seen_write_seconds)
    verdicts = {
        ConditionType.READY: ready,
        ConditionType.ENROLLED: enrolled(view),
        ConditionType.UPDATED: updated(view),
    }
    conditions = update_conditions(
        view.conditions, verdicts, view.generation, now, ensure=CONDITION_TYPES
    )
    wanted: dict[str, Any] = {
        "enrollment": enrollment_state(view.approval, view.decommissioned),
        "conditions": conditions,
        "observedGeneration": view.generation,
    }
    if health != view.health:
        wanted["health"] = health
    current = {
        "enrollment": view.enrollment,
        "conditions": [dict(c) for c in view.conditions],
        "observedGeneration": view.observed_generation,
        "health": view.health,
    }
    status = {key: value for key, value in wanted.items() if current.get(key) != value}
    announcements = _announcements(view, verdicts, now, last_seen_write_seconds) if status else []
    return Evaluation(status, announcements)


def stale_views(
    views: Sequence[DeviceView], now: datetime, last_seen_write_seconds: float
) -> list[DeviceView]:
    """The views :func:`needs_sweep` selects, in order."""
    return [v for v in views if needs_sweep(v, now, last_seen_write_seconds)]
