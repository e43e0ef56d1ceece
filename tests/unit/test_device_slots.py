"""Crash safety of the A/B slots: whatever instant the agent dies at, the device boots the
last committed slot and the interrupted update gets its true terminal report, once.

Two ways of crashing: journals built by hand for each phase (the boot rule alone), and the
real installer killed at each phase change (the exception stands for ``kill -9``: nothing
after the point runs, so the disk is what the installer had written)."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from edgeops.api.wire import UpdateReport
from edgeops.device.slots import InFlight, Journal, SlotContent, SlotStore, boot
from tests.unit.device_support import onnx_classifier
from tests.unit.test_device_install import make_device

V1 = SlotContent(
    model="motion", version=1, sha256="a" * 64, format="onnx", file="model.onnx",
    installed_at="2026-01-01T00:00:00Z",
)  # fmt: skip


def in_flight(phase: str) -> InFlight:
    return InFlight(
        model="motion", target_version=2, manifest_sha256="m" * 64, sha256="b" * 64,
        slot="B", phase=phase, attempt=1,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_new_device_boots_with_nothing_to_report(tmp_path: Path) -> None:
    journal, report = SlotStore(tmp_path).boot()
    assert (journal.active, journal.committed, report) == ("A", None, None)


@pytest.mark.parametrize(
    ("phase", "outcome"),
    [
        ("Downloading", "Failed"),
        ("Verifying", "Failed"),
        ("Installing", "Failed"),
        ("HealthCheck", "RolledBack"),
    ],
)
def test_an_interrupted_update_is_reported_as_such_at_boot(
    tmp_path: Path, phase: str, outcome: str
) -> None:
    store = SlotStore(tmp_path)
    (store.slot_dir("A") / "model.onnx").write_bytes(b"v1")
    (store.slot_dir("B") / ".download").write_bytes(b"half of v2")
    switched = phase == "HealthCheck"
    store.save(
        Journal(
            active="B" if switched else "A",
            committed="A",
            slots={"A": V1, "B": V1.model_copy(update={"version": 2}) if switched else None},
            in_flight=in_flight(phase),
        )
    )
    journal, report = store.boot()
    assert report == UpdateReport(
        target_version=2, phase=outcome, attempt=1, reason_code="Interrupted",  # type: ignore[arg-type]
        message=report.message if report else None,
    )  # fmt: skip
    assert (journal.active, journal.committed, journal.in_flight) == ("A", "A", None)
    assert journal.slots == {"A": V1, "B": None}
    assert journal.pending_reports == [report]
    assert (store.slot_dir("A") / "model.onnx").read_bytes() == b"v1"
    assert not any(store.slot_dir("B").iterdir())  # the half-written slot is emptied
    # Booting again reports nothing new: the outcome is queued once.
    again, second = store.boot()
    assert second is None and again.pending_reports == [report]


def test_a_crash_right_after_the_commit_write_runs_the_new_version(tmp_path: Path) -> None:
    v2 = V1.model_copy(update={"version": 2})
    journal, report = boot(Journal(active="B", committed="B", slots={"A": V1, "B": v2}))
    assert report is None and journal.committed_content() == v2


class Killed(BaseException):
    """Stands for kill -9 at a phase change (after its journal write)."""


@pytest.mark.parametrize(
    ("killed_at", "outcome"),
    [
        ("Downloading", "Failed"),
        ("Verifying", "Failed"),
        ("Installing", "Failed"),
        ("HealthCheck", "RolledBack"),
    ],
)
def test_the_real_installer_killed_at_each_phase_boots_the_committed_slot(
    tmp_path: Path, killed_at: str, outcome: str
) -> None:
    device = make_device(tmp_path)
    v1 = onnx_classifier(1)
    asyncio.run(device.installer.install(device.gateway.publish(v1, version=1)))

    async def kill(report: UpdateReport) -> None:
        if report.phase == killed_at:
            raise Killed

    device.installer.on_phase = kill
    with pytest.raises(Killed):
        asyncio.run(device.installer.install(device.gateway.publish(onnx_classifier(2), version=2)))
    # Reboot: a new store over the same directory, as after power-up.
    journal, report = SlotStore(tmp_path).boot()
    assert report is not None
    assert (report.phase, report.reason_code, report.target_version) == (
        outcome,
        "Interrupted",
        2,
    )
    assert (journal.active, journal.committed) == ("A", "A")
    assert (SlotStore(tmp_path).slot_dir("A") / "model.onnx").read_bytes() == v1
    # The next attempt of the same manifest is a retry, at once (the restart was the
    # pause; no backoff as after a failed download), and it completes.
    device.installer.on_phase = None
    done = asyncio.run(device.installer.install(device.gateway.desired))  # type: ignore[arg-type]
    assert done is not None and (done.phase, done.attempt) == ("Committed", 2)


def test_the_journal_is_written_atomically_and_privately(tmp_path: Path) -> None:
    store = SlotStore(tmp_path)
    store.save(Journal(committed="A", slots={"A": V1, "B": None}))
    assert stat.S_IMODE(store.journal_path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    assert store.load().committed_content() == V1
