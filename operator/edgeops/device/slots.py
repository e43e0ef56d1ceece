"""A/B install slots on disk and the journal that makes updates crash-safe.

Layout under the state directory::

    slots/A/<artifact file>     slots/B/<artifact file>     state.json (the journal)

The journal records which slot runs (``active``), which slot was last *committed*, what each
slot holds, the update in flight (target version, phase, attempt) and terminal reports not
yet acknowledged by the gateway. It is rewritten atomically (:mod:`edgeops.device.files`)
at every phase change, so after a crash or power loss at any instant it describes a state
the agent really reached.

Boot rule (:func:`boot`): the device runs the last committed slot. An update found in
flight was interrupted; it gets its terminal outcome now and never a success it did not
reach: ``Failed`` / ``Interrupted`` if it stopped while downloading, verifying or
installing (the active slot was never switched), ``RolledBack`` / ``Interrupted`` if it had
switched and was in its health check (commit is the journal write that ends the health
check, so a crash before it is a roll-back to the committed slot).
"""

from __future__ import annotations

import contextlib
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgeops.api.wire import UpdateReport, WireSlot, WireSlots
from edgeops.device.files import atomic_write_bytes

SlotName = Literal["A", "B"]
JOURNAL_FILE: Final = "state.json"
SLOTS_DIR: Final = "slots"
#: Phases before the switch: the active slot is still the committed one.
PRE_SWITCH_PHASES: Final = frozenset({"Downloading", "Verifying", "Installing"})
INTERRUPTED: Final = "Interrupted"


def other(slot: SlotName) -> SlotName:
    """The other slot."""
    return "B" if slot == "A" else "A"


def now_rfc3339() -> str:
    """The current UTC time, RFC 3339 with second precision."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlotContent(_Model):
    """What one slot holds: the artifact file ``file`` (name inside the slot directory)."""

    model: str
    model_uid: str | None = Field(None, description="A model re-created under its name differs.")
    version: int = Field(ge=1)
    sha256: str
    format: str
    file: str
    installed_at: str

    def wire(self) -> WireSlot:
        return WireSlot(
            model=self.model, version=self.version, sha256=self.sha256,
            installed_at=self.installed_at,
        )  # fmt: skip


class InFlight(_Model):
    """The update under way: into ``slot``, currently in ``phase`` (non-terminal)."""

    model: str
    target_version: int = Field(ge=1)
    manifest_sha256: str = Field(description="SHA-256 of the signed manifest installed.")
    rollout_uid: str | None = Field(None, description="UID of the rollout that asked for it.")
    sha256: str = Field(description="SHA-256 of the artifact being installed.")
    slot: SlotName
    phase: Literal["Downloading", "Verifying", "Installing", "HealthCheck"]
    attempt: int = Field(1, ge=1)


class Outcome(_Model):
    """The terminal outcome of the last update attempt of a (version, manifest, rollout)."""

    target_version: int
    manifest_sha256: str
    rollout_uid: str | None = None
    phase: Literal["Committed", "RolledBack", "Failed"]
    reason_code: str | None = None
    attempt: int = 1
    finished_at: str | None = None  # RFC 3339; when a retry's backoff starts


def _empty_slots() -> dict[SlotName, SlotContent | None]:
    return {"A": None, "B": None}


class Journal(_Model):
    """Everything the agent must remember across a crash (``state.json``)."""

    active: SlotName = "A"
    committed: SlotName | None = None
    slots: dict[SlotName, SlotContent | None] = Field(default_factory=_empty_slots)
    in_flight: InFlight | None = None
    last_outcome: Outcome | None = None
    pending_reports: list[UpdateReport] = Field(default_factory=list)

    def committed_content(self) -> SlotContent | None:
        """What the committed slot holds (None on a device that never committed)."""
        return None if self.committed is None else self.slots.get(self.committed)

    def wire_slots(self) -> WireSlots:
        """The slots as status reports them."""
        a, b = self.slots.get("A"), self.slots.get("B")
        return WireSlots(active=self.active, a=a.wire() if a else None, b=b.wire() if b else None)


def boot(journal: Journal) -> tuple[Journal, UpdateReport | None]:
    """The journal after a (re)start and the terminal report of an interrupted update (see
    the module docstring). Pure: the caller persists the result."""
    flight = journal.in_flight
    # Whatever ran before, the device boots the last committed slot.
    active: SlotName = journal.committed if journal.committed is not None else "A"
    if flight is None:
        return journal.model_copy(update={"active": active}), None
    phase: Literal["RolledBack", "Failed"] = (
        "Failed" if flight.phase in PRE_SWITCH_PHASES else "RolledBack"
    )
    report = UpdateReport(
        target_version=flight.target_version,
        phase=phase,
        attempt=flight.attempt,
        reason_code=INTERRUPTED,
        message=f"the agent stopped during {flight.phase}; running the committed slot",
    )
    outcome = Outcome(
        target_version=flight.target_version, manifest_sha256=flight.manifest_sha256,
        rollout_uid=flight.rollout_uid, phase=phase,
        reason_code=INTERRUPTED, attempt=flight.attempt, finished_at=now_rfc3339(),
    )  # fmt: skip
    slots = dict(journal.slots)
    if flight.slot != journal.committed:
        # The half-written slot holds nothing the device may run.
        slots[flight.slot] = None
    updated = journal.model_copy(
        update={
            "active": active,
            "slots": slots,
            "in_flight": None,
            "last_outcome": outcome,
            "pending_reports": [*journal.pending_reports, report],
        }
    )
    return updated, report


class SlotStore:
    """The slot directories and the journal under one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.journal_path = state_dir / JOURNAL_FILE

    def slot_dir(self, slot: SlotName) -> Path:
        """The directory of ``slot`` (created)."""
        path = self.state_dir / SLOTS_DIR / slot
        path.mkdir(parents=True, exist_ok=True)
        return path

    def load(self) -> Journal:
        """The journal on disk, or an empty one on a new device. Raises
        ``pydantic.ValidationError`` for a journal that is not one."""
        if not self.journal_path.exists():
            return Journal()
        return Journal.model_validate_json(self.journal_path.read_bytes())

    def save(self, journal: Journal) -> None:
        """Writes the journal atomically. Raises ``OSError``."""
        atomic_write_bytes(self.journal_path, journal.model_dump_json(indent=2).encode())

    def boot(self) -> tuple[Journal, UpdateReport | None]:
        """Applies the boot rule to the journal on disk, persists it and clears what an
        interrupted update left in the slot it was writing."""
        journal, report = boot(self.load())
        if report is not None:
            for slot in ("A", "B"):
                if journal.slots.get(slot) is None and slot != journal.committed:
                    self.clear(slot)
        self.save(journal)
        return journal, report

    def clear(self, slot: SlotName) -> None:
        """Empties the directory of ``slot`` (never the committed one: callers check)."""
        path = self.state_dir / SLOTS_DIR / slot
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)

    def artifact_path(self, journal: Journal, slot: SlotName) -> Path | None:
        """The artifact file ``slot`` holds, per the journal."""
        content = journal.slots.get(slot)
        return None if content is None else self.slot_dir(slot) / content.file
