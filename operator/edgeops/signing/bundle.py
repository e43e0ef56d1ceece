"""Bundle manifests: what a device (or the cloud predictor) installs for one model version
and one target, with every artifact's size and SHA-256, signed with Ed25519.

A signed manifest is stored as the canonical JSON of ``{"manifest", "keyId",
"signature"}``; the signature covers the canonical JSON of ``manifest``. Verification
refuses a file that is not byte-for-byte canonical, so no edit of the stored bytes - not
even one that parses to the same document - passes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature

from .canonical import canonical_json
from .keys import SigningKey, load_public_key

MANIFEST_SCHEMA: Final = "edgeops.dev/bundle-manifest/v1"
_ENVELOPE_KEYS: Final = {"manifest", "keyId", "signature"}
_ARTIFACT_KEYS: Final = ("name", "format", "uri", "size", "sha256")


class VerificationError(Exception):
    """The manifest or an artifact must not be used; the message says why."""


@dataclass(frozen=True)
class BundleArtifact:
    """One file of a bundle."""

    name: str
    format: str
    uri: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": self.format,
            "uri": self.uri,
            "size": self.size,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class SignedManifest:
    """A manifest with its signature; ``to_bytes`` is what is stored and served."""

    manifest: dict[str, Any]
    key_id: str
    signature: str

    def to_json(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "keyId": self.key_id, "signature": self.signature}

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())


def build_manifest(
    *,
    namespace: str,
    model: str,
    version: int,
    target: Mapping[str, Any],
    artifacts: Sequence[BundleArtifact],
    min_agent_version: str,
    created: str,
) -> dict[str, Any]:
    """The manifest document. ``target`` carries name, type (linux, mcu or server) and
    format; artifacts are sorted by name so the same bundle always has the same bytes."""
    if not artifacts:
        raise ValueError("a bundle needs at least one artifact")
    return {
        "schema": MANIFEST_SCHEMA,
        "namespace": namespace,
        "model": model,
        "version": version,
        "target": dict(target),
        "minAgentVersion": min_agent_version,
        "artifacts": [a.to_json() for a in sorted(artifacts, key=lambda a: a.name)],
        "created": created,
    }


def sign_manifest(manifest: Mapping[str, Any], key: SigningKey) -> SignedManifest:
    document = dict(manifest)
    signature = key.private_key().sign(canonical_json(document))
    return SignedManifest(document, key.key_id, base64.b64encode(signature).decode())


def verify_manifest(data: bytes, public_keys: Mapping[str, str]) -> dict[str, Any]:
    """The manifest inside a stored signed manifest, or VerificationError.

    ``public_keys`` maps key id to base64 public key (several during a key rotation).
    """
    envelope = _parse(data)
    key_id = envelope["keyId"]
    public_b64 = public_keys.get(key_id)
    if public_b64 is None:
        raise VerificationError(f"signed with unknown key {key_id!r}")
    try:
        signature = base64.b64decode(envelope["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError("signature is not valid base64") from None
    manifest = envelope["manifest"]
    try:
        load_public_key(public_b64).verify(signature, canonical_json(manifest))
    except InvalidSignature:
        raise VerificationError(f"signature does not match the manifest (key {key_id})") from None
    _check_manifest_shape(manifest)
    return dict(manifest)


def verify_artifact(data: bytes, entry: Mapping[str, Any]) -> None:
    """The file's size and SHA-256 must be those the (verified) manifest lists."""
    name = entry.get("name", "?")
    if len(data) != entry["size"]:
        raise VerificationError(
            f"artifact {name}: size {len(data)} bytes, manifest says {entry['size']}"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise VerificationError(
            f"artifact {name}: sha256 {digest[:16]}..., manifest says {entry['sha256'][:16]}..."
        )


def verify_bundle(
    data: bytes, public_keys: Mapping[str, str], files: Mapping[str, bytes]
) -> dict[str, Any]:
    """Verifies the manifest and every artifact it lists (files by artifact name)."""
    manifest = verify_manifest(data, public_keys)
    for entry in manifest["artifacts"]:
        content = files.get(entry["name"])
        if content is None:
            raise VerificationError(f"artifact {entry['name']} is missing")
        verify_artifact(content, entry)
    return manifest


def _parse(data: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise VerificationError(f"not a JSON document: {exc}") from None
    if not isinstance(envelope, dict) or set(envelope) != _ENVELOPE_KEYS:
        raise VerificationError(f"a signed manifest has exactly the keys {sorted(_ENVELOPE_KEYS)}")
    if not isinstance(envelope["manifest"], dict):
        raise VerificationError("manifest must be a JSON object")
    if not all(isinstance(envelope[k], str) for k in ("keyId", "signature")):
        raise VerificationError("keyId and signature must be strings")
    try:
        canonical = canonical_json(envelope)
    except ValueError as exc:
        raise VerificationError(str(exc)) from None
    if canonical != data:
        # Same document, other bytes: refuse, so verification is over exactly what is stored.
        raise VerificationError("signed manifest is not in canonical JSON form")
    return envelope


def _check_manifest_shape(manifest: Mapping[str, Any]) -> None:
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise VerificationError(f"unsupported manifest schema {manifest.get('schema')!r}")
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, list) or not artifacts:
        raise VerificationError("manifest lists no artifacts")
    for entry in artifacts:
        if not isinstance(entry, dict) or any(k not in entry for k in _ARTIFACT_KEYS):
            raise VerificationError(f"artifact entries need {', '.join(_ARTIFACT_KEYS)}")
