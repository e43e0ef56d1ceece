"""Ed25519 keys as base64 of their 32 raw bytes: short enough for a Secret, a ConfigMap,
an environment variable or a device's flash."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)


@dataclass(frozen=True)
class SigningKey:
    """A private key with its public half and id. ``repr`` never shows the private key."""

    private_b64: str
    public_b64: str
    key_id: str

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r}, public_b64={self.public_b64!r})"

    def private_key(self) -> Ed25519PrivateKey:
        return load_private_key(self.private_b64)


def generate_key() -> SigningKey:
    return _from_private(Ed25519PrivateKey.generate())


def signing_key(private_b64: str) -> SigningKey:
    """The full key (public half and id) from the stored private half."""
    return _from_private(load_private_key(private_b64))


def key_id(public_b64: str) -> str:
    """Short, stable id of a public key: the first 16 hex digits of its SHA-256. Lets a
    verifier pick the right key during rotation and lets status name the key safely."""
    raw = _decode(public_b64, "public key")
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(private_b64: str) -> Ed25519PrivateKey:
    raw = _decode(private_b64, "private key")
    if len(raw) != 32:
        raise ValueError("an Ed25519 private key is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public_key(public_b64: str) -> Ed25519PublicKey:
    raw = _decode(public_b64, "public key")
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def _from_private(key: Ed25519PrivateKey) -> SigningKey:
    private_raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public_raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    public_b64 = base64.b64encode(public_raw).decode()
    return SigningKey(base64.b64encode(private_raw).decode(), public_b64, key_id(public_b64))


def _decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None
