"""The EdgeModel controller's drift monitor: the I/O around :mod:`edgeops.policy.drift`.

Called from the EdgeModel reconcile (the model's only status writer) in its worker thread:
when ``spec.retrain.onDrift.enabled`` and a measurement of the version the fleet runs
(``status.fleetVersion``, else ``currentVersion``) is due (``interval`` after the last
``status.drift.measuredAt``), it reads the version's reference profile (its
``reference-profile`` artifact, a content-addressed S3 blob, cached in this process by its
SHA-256), runs two PromQL queries (bins per feature, feedback per outcome; see
:func:`edgeops.metrics.prometheus.fleet_counts`) and hands everything to
:func:`edgeops.policy.drift.measure`. The caller writes the summary and conditions and
requeues at the next due time.

The calibrated thresholds' simulations never run here: they come from the shared
:class:`~edgeops.controllers.drift_calibration.Calibrator` (a background thread). A
measurement whose simulations are not ready is ``Calibrating`` (DataDrift says so with the
statistics so far, ``status.drift`` is kept) and is retried when they should be done; every
measurement pre-warms the window sizes next to the ones it used.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from edgeops.api.conditions import Verdict
from edgeops.api.constants import ConditionType, Reason
from edgeops.api.edgemodel import DriftSummary, DriftTrigger, ModelVersion
from edgeops.controllers.drift_calibration import Calibrator, shared
from edgeops.controllers.storage import artifact_store
from edgeops.metrics.prometheus import Prometheus, fleet_counts
from edgeops.policy import drift
from edgeops.settings import settings
from edgeops.store import StoreError

PROFILE_FORMAT: Final = "reference-profile"
#: Profiles kept in memory (a few kB each; one per version being measured).
PROFILE_CACHE_SIZE: Final = 64
#: Bounds (seconds) of the retry of a Calibrating measurement.
CALIBRATING_RETRY: Final = (1.0, 30.0)

_profiles: OrderedDict[str, dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    """What the reconcile applies: a new summary (None: nothing measured, keep status),
    conditions to set, Events ``(warning, reason, message)``, and seconds until the next
    measurement (None: only a change of the model can make one due)."""

    summary: DriftSummary | None
    conditions: dict[str, Verdict]
    events: list[tuple[bool, str, str]]
    requeue: float | None


def profile_artifact(version: ModelVersion) -> str | None:
    """SHA-256 of the version's reference profile artifact, or None."""
    for artifact in version.artifacts:
        if artifact.format == PROFILE_FORMAT:
            return artifact.sha256
    return None


def load_profile(sha256: str) -> dict[str, Any]:
    """The profile document with this content hash (``get_blob`` checks it), cached.
    Raises StoreError when S3 fails, ValueError when the blob is not a JSON object."""
    with _lock:
        if sha256 in _profiles:
            _profiles.move_to_end(sha256)
            return _profiles[sha256]
    document = json.loads(artifact_store().get_blob(sha256))
    if not isinstance(document, dict):
        raise ValueError("the reference profile is not a JSON object")
    with _lock:
        _profiles[sha256] = document
        while len(_profiles) > PROFILE_CACHE_SIZE:
            _profiles.popitem(last=False)
    return document


def monitor(
    trigger: DriftTrigger,
    namespace: str,
    model: str,
    version: ModelVersion | None,
    previous: DriftSummary | None,
    now: datetime,
    prometheus: Prometheus | None = None,
    calibrator: Calibrator | None = None,
) -> Outcome:
    """One drift-monitor step for a model (see the module docstring). ``version``: the
    registry entry of the version the fleet runs (None: no version yet); ``calibrator``:
    default the process's shared one."""
    if not trigger.enabled:
        return Outcome(None, {}, [], None)
    if version is None:
        return Outcome(None, {}, [], None)
    sha256 = profile_artifact(version)
    if sha256 is None:
        message = (
            f"v{version.number} has no {PROFILE_FORMAT} artifact: data drift cannot be measured"
        )
        unknown = Verdict("Unknown", Reason.NO_REFERENCE_PROFILE, message)
        return Outcome(None, {ConditionType.DATA_DRIFT: unknown}, [], None)
    wait = drift.seconds_until_due(trigger, previous, version.number, now)
    if wait > 0:
        return Outcome(None, {}, [], wait)
    profile: dict[str, Any] | None = None
    problem: str | None = None
    try:
        profile = load_profile(sha256)
    except (StoreError, ValueError) as error:
        problem = f"{PROFILE_FORMAT} {sha256[:12]} unreadable: {error}"
    counts = drift.FleetCounts()
    if problem is None:
        config = settings()
        client = prometheus or Prometheus(config.prometheus_url, config.prometheus_timeout_seconds)
        counts = fleet_counts(
            client, namespace, model, version.number, drift.window_seconds(trigger), now
        )
    accuracy = version.metrics.overall.get("accuracy") if version.metrics else None
    calibrations = calibrator or shared()
    result = drift.measure(
        trigger, version.number, profile, counts, accuracy, previous, now,
        profile_error=problem, nulls=calibrations.lookup,
    )  # fmt: skip
    calibrations.prewarm_around(result.null_keys)
    if result.calibrating:
        low, high = CALIBRATING_RETRY
        wait = min(high, max(low, calibrations.eta_seconds()))
        return Outcome(None, result.conditions, [], wait)
    interval = drift.seconds_until_due(trigger, result.summary, version.number, now)
    return Outcome(result.summary, result.conditions, result.events, interval)
