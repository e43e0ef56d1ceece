"""Device: one edge device. Selection uses its ordinary metadata labels; spec holds what the
gateway needs to talk to it, status what it runs and how healthy it is.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .common import (
    ApiModel,
    Sha256,
    SpecRoot,
    StatusBase,
    StatusModel,
    TargetType,
    Timestamp,
)

Health = Literal["Healthy", "Degraded", "Unhealthy", "Unknown"]
UpdateResult = Literal["Committed", "RolledBack", "Failed"]
#: What a person (or a GitOps commit) decided about an enrolled device.
Approval = Literal["Pending", "Approved", "Rejected"]
#: Where the device is in its life: decided by spec.approval and spec.decommissioned.
Enrollment = Literal["Pending", "Approved", "Rejected", "Revoked"]
#: Where an in-flight update is, as the agent reports it; the last four are terminal.
UpdatePhase = Literal[
    "Downloading",
    "Verifying",
    "Installing",
    "HealthCheck",
    "Committed",
    "RolledBack",
    "Failed",
    "TimedOut",
]
TERMINAL_UPDATE_PHASES: frozenset[str] = frozenset(
    {"Committed", "RolledBack", "Failed", "TimedOut"}
)
#: A machine-readable reason: CamelCase, e.g. HashMismatch, HealthCheckFailed.
REASON_CODE = r"^[A-Z][A-Za-z0-9]*$"
#: Reasons of a ``Failed`` update another attempt of the same artifact may cure (the link
#: dropped, the agent restarted mid-way); every other reason (a bad signature or hash, a
#: failed health check) would fail again the same way. The agent retries these, with
#: backoff, up to the governing rollout's ``spec.deviceRetries.limit`` times, and the
#: rollout counts such a device as in progress until its last attempt failed.
RETRYABLE_REASONS: frozenset[str] = frozenset({"Interrupted", "DownloadFailed"})

# PEM SubjectPublicKeyInfo, or base64 of the 32 raw Ed25519 bytes (43 chars + '=').
_PUBLIC_KEY = (
    r"^(-----BEGIN PUBLIC KEY-----[A-Za-z0-9+/=\s]+-----END PUBLIC KEY-----\s*"
    r"|[A-Za-z0-9+/]{43}=)$"
)


class DeviceIdentity(ApiModel):
    """The device's public key; the gateway only accepts requests signed by it."""

    public_key: str = Field(
        max_length=4096,
        pattern=_PUBLIC_KEY,
        description="Ed25519 public key: PEM, or base64 of the 32 raw bytes.",
    )
    fingerprint: Sha256 | None = Field(
        None, description="SHA-256 of the 32 raw public key bytes, lower-case hex."
    )
    next_public_key: str | None = Field(
        None,
        max_length=4096,
        pattern=_PUBLIC_KEY,
        description="Key rotation: a second Ed25519 public key (same formats as publicKey) "
        "the gateway also accepts. The first request the device signs with it completes the "
        "rotation: the gateway moves it to publicKey (with its fingerprint) and removes this "
        "field, so the old key is refused from then on.",
    )


class DeviceSpec(SpecRoot):
    """Desired state of a Device."""

    target_type: TargetType = Field(
        description="linux (runs ONNX/TFLite) or mcu (runs a TFLite-Micro firmware bundle)."
    )
    hardware: str | None = Field(
        None, max_length=128, description="Hardware model, e.g. raspberry-pi-4 or esp32-s3."
    )
    site: str | None = Field(None, max_length=63, description="Site the device is installed at.")
    region: str | None = Field(None, max_length=63, description="Region of the site.")
    identity: DeviceIdentity | None = Field(
        None, description="Public identity; set at enrollment when absent."
    )
    approval: Approval = Field(
        "Pending",
        description="Pending, Approved or Rejected: whether the gateway serves this device. "
        "Set by a person (edgeops device approve|reject) or a GitOps commit; enrollment with "
        "an auto-approving bootstrap token sets Approved.",
    )
    decommissioned: bool = Field(
        False,
        description="True revokes the device: the gateway refuses every request it signs, "
        "whatever spec.approval says.",
    )
    report_interval_seconds: int = Field(
        60,
        ge=5,
        le=86400,
        description="Seconds between the agent's status reports. The operator marks the "
        "device Ready=Unknown and health Unknown (reason NotSeen) once it has not been seen "
        "for 3 intervals (at least 3 gateway lastSeen write intervals, since lastSeen is "
        "written coarsely). Default 60.",
    )


class Slot(StatusModel):
    """What one of the two install slots holds."""

    model: str | None = Field(None, max_length=253, description="EdgeModel name.")
    version: int | None = Field(None, ge=1, description="EdgeModel version.")
    sha256: Sha256 | None = Field(None, description="SHA-256 of the installed artifact.")
    installed_at: Timestamp | None = Field(None, description="When it was installed.")


class Slots(StatusModel):
    """A/B slots: updates go to the inactive slot, which becomes active on commit."""

    active: Literal["A", "B"] = Field(description="Slot the device boots and runs from.")
    a: Slot | None = Field(None, description="Slot A.")
    b: Slot | None = Field(None, description="Slot B.")


class LastUpdate(StatusModel):
    """The outcome of the last update attempt."""

    version: int = Field(ge=1, description="Version the device tried to install.")
    outcome: UpdateResult = Field(description="Committed, RolledBack or Failed.")
    time: Timestamp = Field(description="When the outcome was reported.")
    message: str | None = Field(None, max_length=1024, description="Agent's explanation.")


class DeviceCapabilities(StatusModel):
    """What the device's agent reported it can run."""

    arch: str | None = Field(None, max_length=32, description="CPU architecture, e.g. aarch64.")
    runtimes: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list,
        max_length=8,
        description="Runtimes the agent can run, e.g. onnxruntime, tflite, tflm.",
    )
    agent_version: str | None = Field(None, max_length=64, description="Agent version.")


class DeviceUpdate(StatusModel):
    """The update in flight (or the last one, once it reached a terminal phase)."""

    target_version: int = Field(ge=1, description="Version being installed.")
    phase: UpdatePhase = Field(
        description="Downloading, Verifying, Installing, HealthCheck, or a terminal phase: "
        "Committed, RolledBack, Failed, TimedOut."
    )
    attempt: int = Field(1, ge=1, le=1000, description="Attempt number for this version.")
    reason_code: str | None = Field(
        None,
        max_length=63,
        pattern=REASON_CODE,
        description="Why a terminal phase other than Committed was reached, e.g. HashMismatch.",
    )
    message: str | None = Field(None, max_length=1024, description="Agent's explanation.")
    time: Timestamp | None = Field(None, description="When the phase was reported.")


class DeviceStatus(StatusBase):
    """Observed state of a Device, reported by its agent through the gateway."""

    model: str | None = Field(None, max_length=253, description="EdgeModel running now.")
    version: int | None = Field(None, ge=1, description="EdgeModel version running now.")
    rollout: str | None = Field(
        None, max_length=253, description="FleetRollout that last changed the version."
    )
    slots: Slots | None = Field(None, description="A/B install slots.")
    last_seen: Timestamp | None = Field(None, description="Last authenticated contact.")
    health: Health | None = Field(
        None, description="Healthy, Degraded, Unhealthy or Unknown (not seen recently)."
    )
    last_update: LastUpdate | None = Field(None, description="Last update attempt.")
    agent_version: str | None = Field(None, max_length=64, description="Agent version.")
    enrollment: Enrollment | None = Field(
        None,
        description="Pending, Approved, Rejected, or Revoked (decommissioned), as the gateway "
        "applies spec.approval and spec.decommissioned.",
    )
    enrolled_at: Timestamp | None = Field(None, description="When the device enrolled.")
    capabilities: DeviceCapabilities | None = Field(None, description="What the agent can run.")
    update: DeviceUpdate | None = Field(None, description="The update in flight or last done.")
    sequence: int | None = Field(
        None,
        ge=0,
        description="Sequence number of the last accepted report; a report must carry a "
        "higher one.",
    )
