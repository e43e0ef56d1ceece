"""Bundle manifests: what a device (or the cloud predictor) installs for one model version
and one target, with every artifact's size and SHA-256, signed with Ed25519.

A signed manifest is stored as ``{"keyId", "manifest", "signature"}``:

* ``manifest`` - the signed document (:func:`build_manifest`); its ``schema`` member names
  the format and with it the canonical encoding the signature covers:

  - ``edgeops.dev/bundle-manifest/v2`` (:data:`MANIFEST_SCHEMA`, everything signed now):
    RFC 8785 (JCS, §3.2) - what any language's JCS implementation writes;
  - ``edgeops.dev/bundle-manifest/v1`` (:data:`LEGACY_MANIFEST_SCHEMA`, bundles signed
    before): Python ``json.dumps`` with sorted keys and no whitespace. Still verified, so
    bundles already in S3 and on devices stay valid; never signed again.

  The schema is a member of the signed document, so changing it (to have a v2 manifest
  checked under the v1 rules, say) breaks the signature like any other edit.
* ``keyId`` - ``ed25519:`` and 16 hex digits of the public key's SHA-256;
* ``signature`` - standard base64 of the 64-byte Ed25519 signature of the manifest's
  canonical bytes.

The stored file is itself the canonical encoding (the same one) of that envelope, so the
manifest's signed bytes appear verbatim in it after ``"manifest":``. Verification refuses
a file that is not byte-for-byte canonical, so no edit of the stored bytes - not even one
that parses to the same document - passes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature

from .canonical import canonical_json, legacy_canonical_json
from .keys import SigningKey, load_public_key

MANIFEST_SCHEMA: Final = "edgeops.dev/bundle-manifest/v2"
LEGACY_MANIFEST_SCHEMA: Final = "edgeops.dev/bundle-manifest/v1"
# The canonical encoding each schema is signed in.
_ENCODINGS: Final[Mapping[str, Callable[[Any], bytes]]] = {
    MANIFEST_SCHEMA: canonical_json,
    LEGACY_MANIFEST_SCHEMA: legacy_canonical_json,
}
_ENVELOPE_KEYS: Final = {"manifest", "keyId", "signature"}
_ARTIFACT_KEYS: Final = ("name", "format", "uri", "size", "sha256")
# Integers a double holds exactly (I-JSON, RFC 7493 §2.2); JCS treats every number as one.
_SAFE_INTEGER: Final = 2**53 - 1


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
        """The envelope in the canonical encoding of the manifest's schema (RFC 8785 for
        v2). Raises ``ValueError`` for a manifest without a known schema."""
        return _encoding(self.manifest.get("schema"))(self.to_json())


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
    """The manifest document (schema :data:`MANIFEST_SCHEMA`):

    ``{"schema", "namespace", "model", "version", "target", "minAgentVersion",
    "artifacts": [{"name", "format", "uri", "size", "sha256"}, ...], "created"}``.

    ``target`` carries name, type (linux, mcu, server or index), format and hardware;
    artifacts are sorted by name so the same bundle always has the same bytes. Raises
    ``ValueError`` without artifacts."""
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
    """Signs the RFC 8785 bytes of ``manifest`` with Ed25519.

    Only :data:`MANIFEST_SCHEMA` (v2) documents are signed: ``ValueError`` for another or
    no schema (v1 is verify-only) and for content JCS cannot carry (NaN, an infinity, an
    integer beyond ±(2**53 - 1), a non-string key, a type that is not JSON).
    """
    document = dict(manifest)
    if document.get("schema") != MANIFEST_SCHEMA:
        raise ValueError(
            f"only {MANIFEST_SCHEMA} manifests are signed, not {document.get('schema')!r}"
        )
    signature = key.private_key().sign(canonical_json(document))
    return SignedManifest(document, key.key_id, base64.b64encode(signature).decode())


def verify_manifest(data: bytes, public_keys: Mapping[str, str]) -> dict[str, Any]:
    """The manifest inside a stored signed manifest (v2 or v1, see the module docstring),
    or ``VerificationError``: not JSON, not the canonical bytes of the envelope, an
    unsupported schema, an unknown key, a bad signature, or no artifacts.

    ``public_keys`` maps key id to base64 public key (several during a key rotation).
    The schema, read before the signature is checked, only picks the encoding: it is part
    of the signed bytes, so a changed schema fails the signature.
    """
    envelope, encode = _parse(data)
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
        load_public_key(public_b64).verify(signature, encode(manifest))
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


def _encoding(schema: object) -> Callable[[Any], bytes]:
    encode = _ENCODINGS.get(schema) if isinstance(schema, str) else None
    if encode is None:
        raise ValueError(f"unsupported manifest schema {schema!r}")
    return encode


def _parse(data: bytes) -> tuple[dict[str, Any], Callable[[Any], bytes]]:
    """The envelope and the encoding its manifest's schema is signed in."""
    try:
        text = data.decode("utf-8")
        envelope = json.loads(text, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise VerificationError(f"not a JSON document: {exc}") from None
    if not isinstance(envelope, dict) or set(envelope) != _ENVELOPE_KEYS:
        raise VerificationError(f"a signed manifest has exactly the keys {sorted(_ENVELOPE_KEYS)}")
    if not isinstance(envelope["manifest"], dict):
        raise VerificationError("manifest must be a JSON object")
    if not all(isinstance(envelope[k], str) for k in ("keyId", "signature")):
        raise VerificationError("keyId and signature must be strings")
    schema = envelope["manifest"].get("schema")
    try:
        encode = _encoding(schema)
    except ValueError as exc:
        raise VerificationError(str(exc)) from None
    try:
        if schema == MANIFEST_SCHEMA:
            # RFC 8785 numbers are doubles: an integer beyond 2**53 that JCS wrote in full
            # (295147905179352830000) is read back as that double, as a JCS verifier does.
            envelope = json.loads(text, parse_int=_ijson_int, parse_constant=_no_constant)
        canonical = encode(envelope)
    except (ValueError, RecursionError) as exc:
        raise VerificationError(f"cannot canonicalise the signed manifest: {exc}") from None
    if canonical != data:
        # Same document, other bytes: refuse, so verification is over exactly what is stored.
        form = "RFC 8785" if schema == MANIFEST_SCHEMA else "v1 sorted json.dumps"
        raise VerificationError(f"signed manifest is not in canonical JSON form ({form})")
    return envelope, encode


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _ijson_int(text: str) -> int | float:
    number = int(text)
    if abs(number) <= _SAFE_INTEGER:
        return number
    try:
        return float(number)
    except OverflowError:
        raise ValueError(f"number {text[:20]}... is beyond a double") from None


def _check_manifest_shape(manifest: Mapping[str, Any]) -> None:
    if manifest.get("schema") not in _ENCODINGS:
        raise VerificationError(f"unsupported manifest schema {manifest.get('schema')!r}")
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, list) or not artifacts:
        raise VerificationError("manifest lists no artifacts")
    for entry in artifacts:
        if not isinstance(entry, dict) or any(k not in entry for k in _ARTIFACT_KEYS):
            raise VerificationError(f"artifact entries need {', '.join(_ARTIFACT_KEYS)}")
