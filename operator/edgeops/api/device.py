"""Device: one edge device. Selection uses its ordinary metadata labels; spec holds what the
gateway needs to talk to it, status what it runs and how healthy it is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    ApiModel,
    Sha256,
    StatusBase,
    StatusModel,
    TargetType,
    Timestamp,
)

Health = Literal["Healthy", "Degraded", "Unhealthy", "Unknown"]
UpdateResult = Literal["Committed", "RolledBack", "Failed"]

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


class DeviceSpec(ApiModel):
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
