"""The device's Ed25519 identity: generated once, kept under the state directory.

The private key is stored as base64 of its 32 raw bytes (the form
:mod:`edgeops.signing.keys` reads) in ``<state_dir>/identity.key`` with permissions 0600,
written atomically, and loaded on every later start, so the device keeps the key the
gateway enrolled.
"""

from __future__ import annotations

import base64
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from edgeops.device.files import atomic_write_bytes
from edgeops.signing import load_private_key

KEY_FILE: Final = "identity.key"


class IdentityError(Exception):
    """The stored key is unreadable or readable by others."""


@dataclass(frozen=True)
class Identity:
    """The device's key pair."""

    key: Ed25519PrivateKey

    @property
    def public_b64(self) -> str:
        """base64 of the 32 raw public key bytes (what enrollment sends)."""
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()


def load_or_create(state_dir: Path) -> Identity:
    """The key stored under ``state_dir``, generated and stored (0600) on first use.

    Raises :class:`IdentityError` when the file is not a key or group/others may read it
    (a key others could copy is no identity; the device refuses to use it).
    """
    path = state_dir / KEY_FILE
    if path.exists():
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityError(f"{path} is accessible by group or others; expected 0600")
        try:
            return Identity(load_private_key(path.read_text().strip()))
        except ValueError as exc:
            raise IdentityError(f"{path}: {exc}") from None
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(path, base64.b64encode(raw) + b"\n", mode=0o600)
    return Identity(key)
