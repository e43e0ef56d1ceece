"""The update state machine with real ONNX models and real signed manifests: what it
installs, what it refuses (with which reason) and that a refused or failed update never
leaves the device without its committed model."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from edgeops.api.wire import DesiredRetries, DesiredState, UpdateReport
from edgeops.device.client import GatewayClient
from edgeops.device.health import HealthCheckError
from edgeops.device.identity import load_or_create
from edgeops.device.install import Installer
from edgeops.device.sequence import Sequence
from edgeops.device.slots import Journal, SlotStore
from edgeops.signing import generate_key
from tests.unit.device_support import (
    NAMESPACE,
    NOW,
    FakeGateway,
    desired_state,
    onnx_classifier,
    sign_bundle,
)


@dataclass
class Device:
    gateway: FakeGateway
    store: SlotStore
    installer: Installer
    phases: list[UpdateReport] = field(default_factory=list)

    def install(self, desired: DesiredState) -> UpdateReport | None:
        return asyncio.run(self._install(desired))

    async def _install(self, desired: DesiredState) -> UpdateReport | None:
        return await self.installer.install(desired)

    @property
    def journal(self) -> Journal:
        return self.store.load()

    def running(self) -> tuple[str | None, int | None]:
        """(slot, version) the device boots."""
        journal = self.journal
        content = journal.committed_content()
        return journal.committed, content.version if content else None


def make_device(state_dir: Path, target_type: str = "linux") -> Device:
    gateway = FakeGateway()
    identity = load_or_create(state_dir)
    gateway.device_key = identity.public_b64
    client = GatewayClient(
        "http://gateway.local", NAMESPACE, "dev-1", identity.key, Sequence(state_dir),
        transport=gateway.transport(),
    )  # fmt: skip
    phases: list[UpdateReport] = []

    async def on_phase(report: UpdateReport) -> None:
        phases.append(report)

    store = SlotStore(state_dir)
    installer = Installer(
        store=store, source=client, namespace=NAMESPACE, target_type=target_type,
        trusted_keys=gateway.keys, on_phase=on_phase,
    )  # fmt: skip
    return Device(gateway, store, installer, phases)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Device]:
    yield make_device(tmp_path)


def committed_v1(device: Device) -> bytes:
    """Installs v1 and returns its artifact."""
    artifact = onnx_classifier(1)
    report = device.install(device.gateway.publish(artifact, version=1))
    assert report is not None and report.phase == "Committed"
    device.phases.clear()
    return artifact


def test_install_goes_through_every_phase_into_the_inactive_slot(device: Device) -> None:
    v1 = committed_v1(device)
    assert device.running() == ("A", 1)
    v2 = onnx_classifier(2)
    report = device.install(device.gateway.publish(v2, version=2))
    assert report is not None
    assert (report.phase, report.reason_code, report.target_version) == ("Committed", None, 2)
    assert [p.phase for p in device.phases] == [
        "Downloading",
        "Verifying",
        "Installing",
        "HealthCheck",
    ]
    journal = device.journal
    assert (journal.active, journal.committed, journal.in_flight) == ("B", "B", None)
    assert (device.store.slot_dir("B") / "model.onnx").read_bytes() == v2
    # The previous version stays in the other slot, ready for a roll-back.
    assert (device.store.slot_dir("A") / "model.onnx").read_bytes() == v1
    assert journal.slots["B"] is not None
    assert journal.slots["B"].sha256 == hashlib.sha256(v2).hexdigest()
    assert [r.phase for r in journal.pending_reports] == ["Committed", "Committed"]
    # The same desired state again: nothing to do.
    assert device.install(device.gateway.desired) is None  # type: ignore[arg-type]


def refused(device: Device, desired: DesiredState, reason: str) -> None:
    """The update fails with ``reason`` and v1 in slot A stays what the device runs."""
    before = device.journal
    report = device.install(desired)
    assert report is not None
    assert (report.phase, report.reason_code) == ("Failed", reason), report.message
    after = device.journal
    assert device.running() == ("A", 1)
    assert after.active == "A" and after.in_flight is None
    assert after.slots["A"] == before.slots["A"]
    assert after.pending_reports[-1] == report
    assert not any(device.store.slot_dir("B").iterdir())


def test_a_manifest_with_one_byte_changed_is_refused(device: Device) -> None:
    committed_v1(device)
    desired = device.gateway.publish(onnx_classifier(2), version=2)
    text = desired.bundle_manifest
    at = text.index('"sha256":"') + len('"sha256":"')
    flipped = "0" if text[at] != "0" else "1"
    tampered = desired.model_copy(update={"bundle_manifest": text[:at] + flipped + text[at + 1 :]})
    refused(device, tampered, "SignatureInvalid")
    assert device.phases == []  # refused before anything was downloaded


def test_an_artifact_with_one_byte_changed_is_refused(device: Device) -> None:
    committed_v1(device)
    v2 = onnx_classifier(2)
    desired = device.gateway.publish(v2, version=2)
    sha = hashlib.sha256(v2).hexdigest()
    device.gateway.blobs[sha] = v2[:100] + bytes([v2[100] ^ 1]) + v2[101:]
    refused(device, desired, "HashMismatch")
    assert [p.phase for p in device.phases] == ["Downloading", "Verifying"]


def test_an_artifact_longer_than_listed_is_cut_off(device: Device) -> None:
    committed_v1(device)
    v2 = onnx_classifier(2)
    desired = device.gateway.publish(v2, version=2)
    device.gateway.blobs[hashlib.sha256(v2).hexdigest()] = v2 + b"\0" * 10
    refused(device, desired, "SizeMismatch")


def test_a_manifest_signed_by_a_foreign_key_is_refused(device: Device) -> None:
    committed_v1(device)
    v2 = onnx_classifier(2)
    device.gateway.publish(v2, version=2)
    foreign = sign_bundle(v2, version=2, key=generate_key())
    refused(device, desired_state(foreign, version=2), "SignatureInvalid")


def test_an_expired_manifest_is_refused(device: Device) -> None:
    committed_v1(device)
    v2 = onnx_classifier(2)
    device.gateway.publish(v2, version=2)
    stale = sign_bundle(
        v2, version=2, key=device.gateway.trusted, expires=NOW - timedelta(seconds=1)
    )
    refused(device, desired_state(stale, version=2), "ManifestExpired")


def test_a_manifest_for_another_model_is_refused(device: Device) -> None:
    committed_v1(device)
    v2 = onnx_classifier(2)
    device.gateway.publish(v2, version=2)
    other = sign_bundle(v2, version=2, key=device.gateway.trusted, model="other")
    refused(device, desired_state(other, version=2), "ManifestMismatch")


def test_a_bundle_for_another_target_is_refused(device: Device) -> None:
    committed_v1(device)
    v2 = onnx_classifier(2)
    desired = device.gateway.publish(v2, version=2, target_type="mcu", fmt="onnx")
    refused(device, desired, "TargetMismatch")
    # Desired state and manifest disagree on the format: refused as well.
    manifest = sign_bundle(v2, version=2, key=device.gateway.trusted, fmt="onnx")
    refused(device, desired_state(manifest, version=2, fmt="tflite"), "TargetMismatch")


def test_a_model_that_fails_its_health_check_is_rolled_back(device: Device) -> None:
    committed_v1(device)
    report = device.install(device.gateway.publish(onnx_classifier(2, poison=True), version=2))
    assert report is not None
    assert (report.phase, report.reason_code) == ("RolledBack", "HealthCheckFailed")
    assert "not finite" in (report.message or "")
    assert [p.phase for p in device.phases][-1] == "HealthCheck"  # it had switched
    journal = device.journal
    assert (journal.active, journal.committed, journal.slots["B"]) == ("A", "A", None)
    assert device.running() == ("A", 1)
    # A version that failed is not tried again (same version, same manifest).
    assert device.install(device.gateway.desired) is None  # type: ignore[arg-type]


def test_a_lower_version_from_the_gateway_is_a_rollback_and_is_installed(
    device: Device,
) -> None:
    committed_v1(device)
    device.install(device.gateway.publish(onnx_classifier(2), version=2))
    assert device.running() == ("B", 2)
    report = device.install(device.gateway.publish(onnx_classifier(1), version=1))
    assert report is not None and report.phase == "Committed"
    assert device.running() == ("A", 1)


def test_a_failed_download_is_retried_with_backoff_then_given_up(device: Device) -> None:
    committed_v1(device)
    clock = [NOW]
    device.installer.clock = lambda: clock[0]
    v2 = onnx_classifier(2)
    desired = device.gateway.publish(
        v2, version=2
    )  # no retries named: the defaults, 2 retries, 30 s first
    blob = device.gateway.blobs.pop(hashlib.sha256(v2).hexdigest())  # presigned URL 404s

    def attempt(after_seconds: float) -> tuple[str, str | None, int] | None:
        clock[0] += timedelta(seconds=after_seconds)
        report = device.install(desired)
        return None if report is None else (report.phase, report.reason_code, report.attempt)

    assert attempt(0) == ("Failed", "DownloadFailed", 1)
    assert attempt(29) is None  # backoff: 30 s after the first failure
    assert attempt(1) == ("Failed", "DownloadFailed", 2)
    assert attempt(59) is None  # doubled: 60 s after the second
    assert attempt(1) == ("Failed", "DownloadFailed", 3)
    assert attempt(3600) is None  # 2 retries used up: gave up on this manifest
    assert device.running() == ("A", 1)
    # The operator re-signs (a new manifest): a new attempt, which now succeeds.
    device.gateway.blobs[hashlib.sha256(v2).hexdigest()] = blob
    resigned = sign_bundle(
        v2, version=2, key=device.gateway.trusted, expires=NOW + timedelta(days=31)
    )
    report = device.install(desired_state(resigned, version=2))
    assert report is not None and report.phase == "Committed"


def test_the_rollout_sets_the_retries(device: Device) -> None:
    committed_v1(device)
    clock = [NOW]
    device.installer.clock = lambda: clock[0]
    v2 = onnx_classifier(2)
    published = device.gateway.publish(v2, version=2)
    device.gateway.blobs.pop(hashlib.sha256(v2).hexdigest())
    none = published.model_copy(update={"retries": DesiredRetries(limit=0, backoff_seconds=1)})
    report = device.install(none)
    assert report is not None and (report.phase, report.attempt) == ("Failed", 1)
    clock[0] += timedelta(hours=2)
    assert device.install(none) is None  # no retry allowed
    # Retries of the same manifest go by what the desired state says now.
    one = published.model_copy(update={"retries": DesiredRetries(limit=1, backoff_seconds=5)})
    report = device.install(one)
    assert report is not None and (report.phase, report.attempt) == ("Failed", 2)
    clock[0] += timedelta(hours=2)
    assert device.install(one) is None


def test_a_failure_no_retry_can_cure_is_not_retried(device: Device) -> None:
    committed_v1(device)
    clock = [NOW]
    device.installer.clock = lambda: clock[0]
    desired = device.gateway.publish(onnx_classifier(2), version=2)
    device.installer.health_check = _failing_check
    report = device.install(desired)
    assert report is not None and report.reason_code == "HealthCheckFailed"
    clock[0] += timedelta(hours=2)
    assert device.install(desired) is None


def _failing_check(data: bytes, fmt: str) -> object:
    raise HealthCheckError("accuracy below the floor")


def test_a_health_check_that_crashes_counts_as_failed(device: Device) -> None:
    committed_v1(device)

    def crashing(data: bytes, fmt: str) -> object:
        raise RuntimeError("segfault in a vendor delegate")

    device.installer.health_check = crashing
    report = device.install(device.gateway.publish(onnx_classifier(2), version=2))
    assert report is not None
    assert (report.phase, report.reason_code) == ("RolledBack", "HealthCheckFailed")
    assert "RuntimeError: segfault" in (report.message or "")
    assert device.running() == ("A", 1)


def test_the_same_version_of_a_model_created_again_is_installed(device: Device) -> None:
    committed_v1(device)
    again = device.gateway.publish(onnx_classifier(5), version=1, model_uid="uid-motion-2")
    report = device.install(again)
    assert report is not None and report.phase == "Committed"
    assert device.running() == ("B", 1)


def test_a_new_rollout_of_the_same_version_is_a_new_update(device: Device) -> None:
    """A device that gave up on v2 under one FleetRollout (retries used up while the
    artifact was missing) tries again when a new rollout of v2 governs it: the update is
    the (version, manifest, rollout UID), so "a retry is a new FleetRollout" holds."""
    committed_v1(device)
    clock = [NOW]
    device.installer.clock = lambda: clock[0]
    v2 = onnx_classifier(2)
    published = device.gateway.publish(v2, version=2)
    first = published.model_copy(
        update={"rollout": "r6", "rollout_uid": "uid-r6",
                "retries": DesiredRetries(limit=0, backoff_seconds=1)}
    )  # fmt: skip
    blob = device.gateway.blobs.pop(hashlib.sha256(v2).hexdigest())
    report = device.install(first)
    assert report is not None and (report.phase, report.reason_code) == ("Failed", "DownloadFailed")
    clock[0] += timedelta(hours=2)
    device.gateway.blobs[hashlib.sha256(v2).hexdigest()] = blob  # the cause is fixed
    assert device.install(first) is None  # gave up under r6, whatever happens now
    second = first.model_copy(update={"rollout": "r7", "rollout_uid": "uid-r7"})
    report = device.install(second)
    assert report is not None and (report.phase, report.attempt) == ("Committed", 1)
    assert device.running() == ("B", 2)
