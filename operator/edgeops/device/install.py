"""The update state machine: a desired state in, a terminal outcome out.

Order of work (each phase change is first written to the journal, then reported):

1. **Refusals before anything is written.** The signed manifest is verified
   (:func:`edgeops.signing.verify_manifest` with the public keys the agent trusts, bound to
   the namespace, model, model UID and version the desired state names, at the current
   time); then the target: the manifest's and the desired state's target type must be the
   device's, the format one it runs, the same in both. Refused: ``Failed`` with
   ``SignatureInvalid``, ``ManifestExpired``, ``ManifestMismatch`` or ``TargetMismatch``;
   nothing in the slots changes.
2. ``Downloading`` the manifest's artifact into the *inactive* slot (never the committed
   one), streamed with the manifest's size as the bound.
3. ``Verifying``: size and SHA-256 (:func:`edgeops.signing.verify_artifact`); a
   TFLite-Micro bundle must also hold a well-formed C array.
4. ``Installing``: the file gets its final name in the slot; then one journal write records
   the slot's content and switches ``active`` to it (phase ``HealthCheck``).
5. ``HealthCheck`` (:mod:`edgeops.device.health`), then ``Committed`` (the journal write
   that makes the slot the committed one) or ``RolledBack`` with ``HealthCheckFailed``
   (active back to the committed slot).

Versions: the desired state is authoritative. A version lower than the committed one is a
rollback the rollout (or a person) chose, and is installed like any other; what protects
against an old bundle replayed by an attacker is the manifest's signature over the version
and its expiry, not the version order.

Every attempt ends in a terminal report, appended to the journal's ``pending_reports`` in
the same write that ends the attempt, so it is sent even if the agent restarts before the
gateway acknowledged it. An update is a (version, manifest, rollout UID): one that failed is
not tried again under the same rollout (a new FleetRollout of the same version is a new
update, with a fresh retry budget), except after
a transient failure (``Interrupted``, ``DownloadFailed``): up to ``retries.limit`` more
attempts of the desired state (the governing rollout's ``spec.deviceRetries``; without one
:data:`DEFAULT_RETRIES`). After an interrupted one (the agent restarted) at once; after a
failed download the k-th retry waits ``backoffSeconds · 2^(k-1)`` (at most
:data:`MAX_BACKOFF_SECONDS`) from the end of the previous attempt, so a fleet whose downloads
failed together does not retry together against a struggling gateway or store (a device
retries at its first cycle after the backoff, so the fleet's retries also spread over the
jittered report interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from edgeops.api.common import format_time, parse_time
from edgeops.api.device import RETRYABLE_REASONS
from edgeops.api.wire import DesiredRetries, DesiredState, UpdateReport
from edgeops.device.client import DownloadError, GatewayError
from edgeops.device.files import fsync_dir
from edgeops.device.health import HealthCheckError, check_artifact
from edgeops.device.models import FORMATS_BY_TARGET, ModelLoadError, tflm_flatbuffer
from edgeops.device.slots import (
    INTERRUPTED,
    InFlight,
    Journal,
    Outcome,
    SlotContent,
    SlotName,
    SlotStore,
    now_rfc3339,
    other,
)
from edgeops.signing import Binding, VerificationError, check_binding, verify_artifact
from edgeops.signing import verify_manifest as _verify_manifest

log = logging.getLogger(__name__)

#: Retries after a transient failure when the desired state names none (a version no
#: rollout chose): the rollout API's defaults.
DEFAULT_RETRIES: Final = DesiredRetries(limit=2, backoff_seconds=30)
MAX_BACKOFF_SECONDS: Final = 3600.0
#: Outcomes worth another attempt of the same (version, manifest).
TRANSIENT_REASONS: Final = RETRYABLE_REASONS
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DOWNLOAD: Final = ".download"
_FILE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class InstallRefusedError(Exception):
    """The update must not go on; ``reason`` is the CamelCase code reported."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ArtifactSource(Protocol):
    """Where artifacts come from (the gateway client)."""

    async def download_artifact(self, sha256: str, dest: Path, max_bytes: int) -> None: ...


HealthCheck = Callable[[bytes, str], object]
"""Checks an installed artifact (bytes, format); raises HealthCheckError to roll back."""
PhaseReporter = Callable[[UpdateReport], Awaitable[None]]


def manifest_digest(desired: DesiredState) -> str:
    """SHA-256 of the signed manifest as delivered: with the version, it names an attempt
    (a re-signed manifest, say after its expiry, is a new one)."""
    return hashlib.sha256(desired.bundle_manifest.encode()).hexdigest()


def verify_desired_manifest(
    desired: DesiredState, namespace: str, trusted_keys: Mapping[str, str], now: datetime
) -> dict[str, Any]:
    """The verified manifest of ``desired``, or :class:`InstallRefusedError` with
    ``SignatureInvalid`` (unsigned, unknown key, bad signature, not canonical),
    ``ManifestMismatch`` (signed, but for another namespace, model, UID or version) or
    ``ManifestExpired``."""
    data = desired.bundle_manifest.encode()
    expected = Binding(namespace, desired.model, desired.version, desired.model_uid)
    try:
        return _verify_manifest(data, trusted_keys, expected=expected, now=now)
    except VerificationError as exc:
        failure = str(exc)
    # Tell a bad signature from a good one on the wrong or an expired manifest: verify the
    # signature alone (bound to what the document itself claims, at the epoch).
    try:
        document = json.loads(data)["manifest"]
        claimed = Binding(
            str(document.get("namespace")), str(document.get("model")),
            int(document.get("version")), None,
        )  # fmt: skip
        manifest = _verify_manifest(data, trusted_keys, expected=claimed, now=_EPOCH)
    except (VerificationError, ValueError, TypeError, KeyError):
        raise InstallRefusedError("SignatureInvalid", failure) from None
    try:
        check_binding(manifest, expected, _EPOCH)
    except VerificationError as exc:
        raise InstallRefusedError("ManifestMismatch", str(exc)) from None
    raise InstallRefusedError("ManifestExpired", failure)


def select_artifact(
    manifest: Mapping[str, Any], desired: DesiredState, target_type: str
) -> dict[str, Any]:
    """The manifest's artifact for this device, or :class:`InstallRefusedError`:
    ``TargetMismatch`` when manifest, desired state and device disagree on target type or
    format, or the device does not run that format; ``BundleInvalid`` when the artifact's
    name is not a plain file name or its size no count of bytes."""
    target = manifest.get("target") or {}
    fmt = target.get("format")
    problems = []
    if target.get("type") != target_type or desired.target.type != target_type:
        problems.append(
            f"bundle for a {target.get('type')} target (desired: {desired.target.type}), "
            f"this device is {target_type}"
        )
    if fmt != desired.target.format:
        problems.append(f"bundle format {fmt}, desired state says {desired.target.format}")
    if fmt not in FORMATS_BY_TARGET.get(target_type, frozenset()):
        problems.append(f"a {target_type} device does not run {fmt}")
    entries = [a for a in manifest["artifacts"] if a.get("format") == fmt]
    if len(entries) != 1:
        problems.append(f"the bundle lists {len(entries)} {fmt} artifacts, expected one")
    if problems:
        raise InstallRefusedError("TargetMismatch", "; ".join(problems))
    entry = dict(entries[0])
    # The name becomes a file in the slot: a plain file name, never a path.
    if not isinstance(entry["name"], str) or not _FILE_NAME.fullmatch(entry["name"]):
        raise InstallRefusedError("BundleInvalid", f"artifact name {entry['name']!r}")
    if not isinstance(entry["size"], int) or isinstance(entry["size"], bool) or entry["size"] < 0:
        raise InstallRefusedError("BundleInvalid", f"artifact size {entry['size']!r}")
    return entry


Decision = Literal["UpToDate", "Install", "Wait", "GaveUp"]


def retry_delay(retries: DesiredRetries, failed_attempt: int) -> float:
    """Seconds to wait after attempt ``failed_attempt`` (1-based) failed before the next:
    ``backoffSeconds · 2^(failed_attempt-1)``, at most :data:`MAX_BACKOFF_SECONDS`."""
    return min(retries.backoff_seconds * 2.0 ** (failed_attempt - 1), MAX_BACKOFF_SECONDS)


def decide(
    journal: Journal, desired: DesiredState, now: datetime | None = None
) -> tuple[Decision, int]:
    """Whether to install ``desired`` and the attempt number: up to date when the committed
    slot holds its model version; given up after a non-transient failure or once
    ``retries.limit`` retries of the same (version, manifest, rollout UID) failed; ``Wait``
    while the backoff after a transient failure runs (``now``: the current time, default
    the clock)."""
    committed = journal.committed_content()
    if committed and (committed.model, committed.model_uid, committed.version) == (
        desired.model,
        desired.model_uid,
        desired.version,
    ):
        return "UpToDate", 0
    last = journal.last_outcome
    if last and (last.target_version, last.manifest_sha256, last.rollout_uid) == (
        desired.version,
        manifest_digest(desired),
        desired.rollout_uid,
    ):
        if last.phase == "Committed":
            return "UpToDate", 0
        retries = desired.retries or DEFAULT_RETRIES
        if last.reason_code not in TRANSIENT_REASONS or last.attempt > retries.limit:
            return "GaveUp", last.attempt
        # An install cut short by a restart is retried at once: the restart was the pause,
        # and nothing suggests the network or the store is struggling.
        finished = None if last.reason_code == INTERRUPTED else parse_time(last.finished_at)
        now = now or datetime.now(UTC)
        if finished is not None and (now - finished).total_seconds() < retry_delay(
            retries, last.attempt
        ):
            return "Wait", last.attempt + 1
        return "Install", last.attempt + 1
    return "Install", 1


@dataclass
class Installer:
    """Installs desired states on one device (see the module docstring)."""

    store: SlotStore
    source: ArtifactSource
    namespace: str
    target_type: str
    trusted_keys: Mapping[str, str]
    health_check: HealthCheck = check_artifact
    on_phase: PhaseReporter | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def install(self, desired: DesiredState) -> UpdateReport | None:
        """Brings the device to ``desired``; the terminal report of the attempt (also queued
        in the journal), or None when nothing was to be done."""
        journal = self.store.load()
        decision, attempt = decide(journal, desired, self.clock())
        if decision != "Install":
            return None
        digest = manifest_digest(desired)
        try:
            manifest = verify_desired_manifest(
                desired, self.namespace, self.trusted_keys, self.clock()
            )
            entry = select_artifact(manifest, desired, self.target_type)
        except InstallRefusedError as exc:
            log.warning("refusing %s v%s: %s", desired.model, desired.version, exc)
            return self._finish(journal, desired, digest, attempt, "Failed", exc.reason, str(exc))
        slot: SlotName = "A" if journal.committed is None else other(journal.committed)
        flight = InFlight(
            model=desired.model, target_version=desired.version, manifest_sha256=digest,
            rollout_uid=desired.rollout_uid, sha256=entry["sha256"], slot=slot,
            phase="Downloading", attempt=attempt,
        )  # fmt: skip
        journal = await self._phase(journal.model_copy(update={"in_flight": flight}))
        self.store.clear(slot)
        staging = self.store.slot_dir(slot) / _DOWNLOAD
        try:
            await self.source.download_artifact(entry["sha256"], staging, int(entry["size"]))
        except DownloadError as exc:
            return self._abort(journal, exc.reason, str(exc))
        except GatewayError as exc:
            return self._abort(journal, "DownloadFailed", f"{exc.reason}: {exc.message}")
        journal = await self._phase(_with_phase(journal, "Verifying"))
        data = await asyncio.to_thread(staging.read_bytes)
        try:
            verify_artifact(data, entry)
            if entry["format"] == "tflm":
                tflm_flatbuffer(data)
        except VerificationError as exc:
            reason = "SizeMismatch" if len(data) != entry["size"] else "HashMismatch"
            return self._abort(journal, reason, str(exc))
        except ModelLoadError as exc:
            return self._abort(journal, "BundleInvalid", str(exc))
        journal = await self._phase(_with_phase(journal, "Installing"))
        final = self.store.slot_dir(slot) / str(entry["name"])
        staging.replace(final)
        fsync_dir(final.parent)
        content = SlotContent(
            model=desired.model, model_uid=desired.model_uid, version=desired.version,
            sha256=entry["sha256"],
            format=entry["format"], file=final.name, installed_at=now_rfc3339(),
        )  # fmt: skip
        # The switch: slot content and active slot change in one atomic journal write.
        switched = _with_phase(journal, "HealthCheck").model_copy(
            update={"active": slot, "slots": {**journal.slots, slot: content}}
        )
        journal = await self._phase(switched)
        try:
            await asyncio.to_thread(self.health_check, data, entry["format"])
        except Exception as exc:  # the check is the gate: any failure of it is unhealthy
            message = (
                str(exc) if isinstance(exc, HealthCheckError) else f"{type(exc).__name__}: {exc}"
            )
            return self._finish(
                journal, desired, digest, attempt, "RolledBack", "HealthCheckFailed", message
            )
        committed = journal.model_copy(update={"committed": slot})
        return self._finish(
            committed, desired, digest, attempt, "Committed", None,
            f"running {desired.model} v{desired.version} from slot {slot}",
        )  # fmt: skip

    async def _phase(self, journal: Journal) -> Journal:
        """Persists a phase change, then reports it (best effort: the terminal report is
        what must arrive, and it is queued)."""
        self.store.save(journal)
        flight = journal.in_flight
        if self.on_phase is not None and flight is not None:
            report = UpdateReport(
                target_version=flight.target_version, phase=flight.phase, attempt=flight.attempt
            )
            with contextlib.suppress(GatewayError):
                await self.on_phase(report)
        return journal

    def _abort(self, journal: Journal, reason: str, message: str) -> UpdateReport:
        """Ends an attempt that failed before the switch."""
        flight = journal.in_flight
        assert flight is not None  # only called while an update is in flight
        log.warning("update to v%s failed: %s: %s", flight.target_version, reason, message)
        return self._end(journal, flight, "Failed", reason, message)

    def _finish(
        self,
        journal: Journal,
        desired: DesiredState,
        digest: str,
        attempt: int,
        phase: Literal["Committed", "RolledBack", "Failed"],
        reason: str | None,
        message: str,
    ) -> UpdateReport:
        flight = journal.in_flight or InFlight(
            model=desired.model, target_version=desired.version, manifest_sha256=digest,
            rollout_uid=desired.rollout_uid, sha256="", slot=journal.active,
            phase="Downloading", attempt=attempt,
        )  # fmt: skip
        return self._end(journal, flight, phase, reason, message)

    def _end(
        self,
        journal: Journal,
        flight: InFlight,
        phase: Literal["Committed", "RolledBack", "Failed"],
        reason: str | None,
        message: str,
    ) -> UpdateReport:
        report = UpdateReport(
            target_version=flight.target_version, phase=phase, attempt=flight.attempt,
            reason_code=reason, message=message[:1024],
        )  # fmt: skip
        outcome = Outcome(
            target_version=flight.target_version, manifest_sha256=flight.manifest_sha256,
            rollout_uid=flight.rollout_uid, phase=phase, reason_code=reason,
            attempt=flight.attempt, finished_at=format_time(self.clock()),
        )  # fmt: skip
        slots = dict(journal.slots)
        touched = journal.in_flight is not None and flight.slot != journal.committed
        if phase != "Committed" and touched:
            slots[flight.slot] = None  # the failed install is not something to boot
        active: SlotName = journal.committed if journal.committed is not None else "A"
        final = journal.model_copy(
            update={
                "active": active,
                "slots": slots,
                "in_flight": None,
                "last_outcome": outcome,
                "pending_reports": [*journal.pending_reports, report],
            }
        )
        # One write ends the attempt and queues its report: no update without an outcome.
        self.store.save(final)
        if phase != "Committed" and touched:
            self.store.clear(flight.slot)
        return report


def _with_phase(
    journal: Journal, phase: Literal["Downloading", "Verifying", "Installing", "HealthCheck"]
) -> Journal:
    flight = journal.in_flight
    assert flight is not None  # phases move only while an update is in flight
    return journal.model_copy(update={"in_flight": flight.model_copy(update={"phase": phase})})
