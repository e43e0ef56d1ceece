"""When an EdgeModel starts a TrainingRun: the five triggers, cooldown, max concurrent runs
and deduplication, as one pure function of (spec, trigger bookkeeping, observations, clock).

At most one run is started per evaluation, whatever number of triggers fired: the
winning reason is the most specific one (a person's request first, the clock last) and
every trigger that fired is listed, so nothing is lost and nothing starts twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from edgeops.api.common import format_time
from edgeops.api.constants import Reason
from edgeops.api.edgemodel import DriftSummary, RetrainPolicy, TriggerState
from edgeops.api.trainingrun import TrainingReason, TrainingTemplate
from edgeops.canonical_json import sorted_json

from .cron import latest_tick, parse_duration

#: Winner when several triggers fire at once.
PRIORITY: Final[tuple[TrainingReason, ...]] = (
    "Manual",
    "Drift",
    "Accuracy",
    "DataChange",
    "CodeChange",
    "Schedule",
)


@dataclass(frozen=True)
class Observed:
    """What the controller saw just now."""

    now: datetime
    #: The dataset version a run would train on (the pinned one, else the latest).
    dataset_version: str | None
    code_hash: str
    #: Value of the edgeops.dev/retrain annotation, if any.
    retrain_request: str | None
    drift: DriftSummary | None
    #: Accuracy of the current version, the reference for the accuracy trigger.
    current_accuracy: float | None
    active_runs: int
    #: When ``dataset_version`` was published (None: unknown). A drift run trains only on
    #: data published a full drift window after the drift began (:func:`decide`).
    dataset_created: datetime | None = None
    #: The newest Approved version in the registry: a drift measured on an older version
    #: is not a signal (the newer one is on its way to the fleet and is measured there).
    newest_version: int | None = None


@dataclass(frozen=True)
class Signal:
    reason: TrainingReason
    detail: str


@dataclass(frozen=True)
class Decision:
    """``start`` with ``reason`` when a run should start now; otherwise ``blocked`` says why
    pending signals wait. ``state`` is the bookkeeping to persist either way."""

    start: bool
    state: TriggerState
    reason: TrainingReason | None = None
    signals: tuple[Signal, ...] = field(default_factory=tuple)
    blocked: str | None = None
    message: str = ""
    #: when a blocked decision can change by the clock alone (the end of a cooldown).
    retry_at: datetime | None = None

    @property
    def reasons(self) -> list[TrainingReason]:
        return [s.reason for s in self.signals]


def code_hash(training: TrainingTemplate) -> str:
    """Hash of what, in the EdgeModel spec, decides the trained code: a change (a new image
    or config committed to Git) is a code change. The dataset is deliberately excluded."""
    trainer = training.trainer
    document = {
        "image": trainer.image,
        "command": trainer.command,
        "args": trainer.args,
        "config": trainer.config,
        "hyperparameters": trainer.hyperparameters.model_dump(by_alias=True, mode="json"),
        "exports": sorted(training.exports),
    }
    # ASCII-escaped sorted JSON, as the hash in status was computed: a new encoding would
    # look like a code change and retrain every model.
    return hashlib.sha256(sorted_json(document, ensure_ascii=True)).hexdigest()


#: Longest request annotation kept verbatim in status.triggers; a longer one is kept as its
#: digest, so a user's annotation can never make the status too large for its schema.
MAX_REQUEST_TOKEN: Final = 128


def request_token(raw: str | None) -> str:
    """What status.triggers records of a request annotation (edgeops.dev/retrain or
    /promote): the stripped value when at most MAX_REQUEST_TOKEN characters, else
    ``sha256:<64 hex>`` of it (71 characters). "" for no request."""
    value = (raw or "").strip()
    if len(value) <= MAX_REQUEST_TOKEN:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def signals(policy: RetrainPolicy, state: TriggerState, seen: Observed) -> list[Signal]:
    """Every trigger that fired since the bookkeeping was last updated, by priority."""
    found: list[Signal] = []
    request = request_token(seen.retrain_request)
    if request and request != state.retrain_request:
        found.append(Signal("Manual", f"retrain requested ({request[:64]})"))
    found += _drift_signals(policy, state, seen)
    if seen.dataset_version and seen.dataset_version != state.dataset_version:
        if state.run_counter == 0:
            found.append(
                Signal("DataChange", f"initial training on dataset {seen.dataset_version[:12]}")
            )
        elif policy.on_new_dataset_version:
            old = (state.dataset_version or "none")[:12]
            found.append(
                Signal("DataChange", f"dataset version {old} -> {seen.dataset_version[:12]}")
            )
    if policy.on_code_change and state.code_hash and seen.code_hash != state.code_hash:
        found.append(
            Signal("CodeChange", f"trainer config {state.code_hash[:12]} -> {seen.code_hash[:12]}")
        )
    if policy.schedule and state.schedule_checked_at:
        checked = datetime.fromisoformat(state.schedule_checked_at)
        tick = latest_tick(policy.schedule, checked, seen.now)
        if tick is not None:
            found.append(
                Signal("Schedule", f"cron {policy.schedule!r} fired at {format_time(tick)}")
            )
    return sorted(found, key=lambda s: PRIORITY.index(s.reason))


def decide(policy: RetrainPolicy, state: TriggerState, seen: Observed) -> Decision:
    """Whether to start a run now, and the bookkeeping to persist."""
    base = state
    if policy.schedule and not state.schedule_checked_at:
        # A new schedule counts from now: creating a model is not a missed cron tick.
        base = state.model_copy(update={"schedule_checked_at": format_time(seen.now)})
    fired = tuple(signals(policy, base, seen))
    if not fired:
        return Decision(False, base, message="no trigger fired")
    pending = ", ".join(f"{s.reason} ({s.detail})" for s in fired)
    if seen.dataset_version is None:
        return Decision(
            False,
            base,
            signals=fired,
            blocked=Reason.DATASET_VERSION_NOT_FOUND,
            message=f"waiting for a dataset version; pending: {pending}",
        )
    if seen.active_runs >= policy.max_concurrent_runs:
        return Decision(
            False,
            base,
            signals=fired,
            blocked=Reason.MAX_CONCURRENT_RUNS,
            message=f"{seen.active_runs} run(s) active, max {policy.max_concurrent_runs}; "
            f"pending: {pending}",
        )
    monitoring = {"Drift", "Accuracy"}
    if {
        s.reason for s in fired
    } <= monitoring and base.drift_dataset_version == seen.dataset_version:
        # Retraining on the data the last drift-triggered run already had would repeat that
        # model; the signal waits for new data (collected from the fleet, or labelled).
        return Decision(
            False,
            base,
            signals=fired,
            blocked=Reason.AWAITING_NEW_DATA,
            message=f"{pending}; the last run for drift already trained on dataset "
            f"{seen.dataset_version[:12]}: waiting for a new dataset version",
        )
    stale = _stale_for_drift(policy, seen)
    if {s.reason for s in fired} <= monitoring and stale is not None:
        return Decision(
            False,
            base,
            signals=fired,
            blocked=Reason.AWAITING_NEW_DATA,
            message=f"{pending}; {stale}",
        )
    cooldown = parse_duration(policy.cooldown)
    manual = fired[0].reason == "Manual"  # a person's explicit request skips the cooldown
    if base.last_trigger_time and not manual:
        ready_at = datetime.fromisoformat(base.last_trigger_time) + cooldown
        if seen.now < ready_at:
            return Decision(
                False,
                base,
                signals=fired,
                blocked=Reason.COOLDOWN,
                retry_at=ready_at,
                message=f"cooldown {policy.cooldown} after the last run: next run at "
                f"{format_time(ready_at)}; pending: {pending}",
            )
    now = format_time(seen.now)
    consumed = base.model_copy(
        update={
            "dataset_version": seen.dataset_version,
            "code_hash": seen.code_hash,
            "retrain_request": request_token(seen.retrain_request) or base.retrain_request,
            "drift_measured_at": (seen.drift.measured_at if seen.drift else None)
            or base.drift_measured_at,
            "drift_dataset_version": seen.dataset_version
            if any(s.reason in monitoring for s in fired)
            else base.drift_dataset_version,
            "schedule_checked_at": now if policy.schedule else None,
            "last_trigger_time": now,
            "last_reasons": [s.reason for s in fired],
            "run_counter": base.run_counter + 1,
        }
    )
    return Decision(True, consumed, reason=fired[0].reason, signals=fired, message=pending)


def _stale_for_drift(policy: RetrainPolicy, seen: Observed) -> str | None:
    """Why ``seen.dataset_version`` is not yet new data for a run against the standing
    drift, or None when it is. New data is what the drifted world produced: a dataset
    version published at least one drift ``window`` after ``driftSince`` (the evidence the
    monitor needed to call the drift is also what the retrained model must see, so its
    reference profile describes the fleet as it is now). A summary without ``driftSince``
    (written by hand, or by an older monitor) is not checked."""
    drift = seen.drift
    if drift is None:
        return None
    starts = [s for s in (drift.drift_since, drift.concept_drift_since) if s]
    if not starts:
        return None
    window = parse_duration(policy.on_drift.window)
    wanted = datetime.fromisoformat(min(starts)) + window
    if seen.dataset_created is not None and seen.dataset_created >= wanted:
        return None
    have = (
        f"dataset {(seen.dataset_version or 'none')[:12]} was published "
        f"{format_time(seen.dataset_created)}"
        if seen.dataset_created is not None
        else f"dataset {(seen.dataset_version or 'none')[:12]} has no publication time"
    )
    return (
        f"drift since {min(starts)}: waiting for a dataset version published after "
        f"{format_time(wanted)} (driftSince + window {policy.on_drift.window}), with the "
        f"field data of the drifted fleet; {have}"
    )


def _drift_signals(policy: RetrainPolicy, state: TriggerState, seen: Observed) -> list[Signal]:
    drift, trigger = seen.drift, policy.on_drift
    if not trigger.enabled or drift is None or not drift.measured_at:
        return []
    if drift.measured_at == state.drift_measured_at:
        return []  # this measurement already started a run
    if (
        drift.version is not None
        and seen.newest_version is not None
        and drift.version < seen.newest_version
    ):
        # A newer version exists (retrained for this drift, or promoted meanwhile): the
        # monitor measures it once the fleet runs it; retraining again now would only
        # stack versions the fleet has not reached yet.
        return []
    if drift.verdict is not None or drift.concept_verdict is not None:
        return _measured_signals(drift)
    # A summary without verdicts (written by hand or by an older monitor): the fixed
    # PSI/JS thresholds of the policy decide, as before.
    if drift.samples is not None and drift.samples < trigger.min_samples:
        return []  # too little telemetry is no evidence either way
    found: list[Signal] = []
    over = []
    if drift.psi is not None and drift.psi > trigger.psi_threshold:
        over.append(f"PSI {drift.psi:.3f} > {trigger.psi_threshold:g}")
    if drift.js is not None and drift.js > trigger.js_threshold:
        over.append(f"JS {drift.js:.3f} > {trigger.js_threshold:g}")
    if over:
        found.append(Signal("Drift", ", ".join(over)))
    if drift.accuracy is not None and seen.current_accuracy is not None:
        drop = seen.current_accuracy - drift.accuracy
        if drop > trigger.accuracy_drop_threshold:
            found.append(
                Signal(
                    "Accuracy",
                    f"feedback accuracy {drift.accuracy:.3f} vs {seen.current_accuracy:.3f}: "
                    f"drop {drop:.3f} > {trigger.accuracy_drop_threshold:g}",
                )
            )
    return found


def _measured_signals(drift: DriftSummary) -> list[Signal]:
    """Signals from the drift monitor's verdicts (:mod:`edgeops.policy.drift`): Drift only.
    Inconclusive and Error are no evidence either way and never start a run."""
    found: list[Signal] = []
    if drift.verdict == "Drift":
        found.append(Signal("Drift", f"v{drift.version}: {drift.reason or 'data drift'}"[:300]))
    if drift.concept_verdict == "Drift":
        found.append(
            Signal("Accuracy", f"v{drift.version}: {drift.concept_reason or 'concept drift'}"[:300])
        )
    return found


def seconds_until_next_check(
    policy: RetrainPolicy, decision: Decision, now: datetime
) -> float | None:
    """Seconds until the clock alone can change ``decision``: the end of a cooldown, or
    the next minute when a cron schedule is set (cron's finest step). None when only a
    change (new data, a request, a finished run) can."""
    waits: list[float] = []
    if decision.retry_at is not None:
        waits.append(max((decision.retry_at - now).total_seconds(), 0.0))
    if policy.schedule:
        waits.append(60.0 - now.second - now.microsecond / 1e6)
    return min(waits) if waits else None


def batch_wait(first_signal: datetime, now: datetime, window_seconds: float) -> float:
    """Seconds still to wait before starting a run whose first trigger fired at
    ``first_signal``: triggers firing within ``window_seconds`` of it join the same run."""
    return max(window_seconds - (now - first_signal).total_seconds(), 0.0)


def field_data(
    reason: TrainingReason | None,
    drift: DriftSummary | None,
    versions: Sequence[tuple[str, datetime]],
    dataset_version: str,
) -> dict[str, Any] | None:
    """The ``fieldData`` of a run started for ``reason`` (camelCase JSON for its spec), or
    None when the run trains on its dataset version as a whole.

    A run for Drift with a standing drift (``driftSince``, or ``conceptDriftSince`` when
    earlier) gets as baseline the newest of the Dataset's ``versions`` (id, published)
    published at or before the drift began: rows it lacks are what the fleet uploaded
    since (:mod:`edgeops.training.selection`). When status no longer lists such a version
    (``historyLimit`` pruned it while the fleet kept uploading), the oldest listed one: it
    was published after the drift began, so the rows it lacks are still post-drift rows,
    only fewer. Never ``dataset_version`` itself; None when no other version is listed."""
    if reason != "Drift" or drift is None:
        return None
    starts = [s for s in (drift.drift_since, drift.concept_drift_since) if s]
    if not starts:
        return None
    began = datetime.fromisoformat(min(starts))
    others = sorted((created, vid) for vid, created in versions if vid != dataset_version)
    before = [(c, v) for c, v in others if c <= began]
    if before:
        baseline = before[-1][1]
    elif others:
        baseline = others[0][1]
    else:
        return None
    return {"baselineVersion": baseline, "driftSince": min(starts)}
