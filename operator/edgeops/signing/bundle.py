"""Bundle manifests: what a device (or the cloud predictor) installs for one model version
and one target, with every artifact's size and SHA-256, signed with Ed25519.

A signed manifest is stored as ``{"keyId", "manifest", "signature"}``:

* ``manifest`` - the signed document (:func:`build_manifest`); its ``schema`` member names
  the format and with it the canonical encoding the signature covers:

  - ``edgeops.dev/bundle-manifest/v3`` (:data:`MANIFEST_SCHEMA`, everything signed now):
    RFC 8785 (JCS, §3.2) - what any language's JCS implementation writes. Binds the
    namespace, the model's name and UID, the version number and an expiry
    (``expiresAt``, RFC 3339 UTC): a verifier passes what it expects (:class:`Binding`) and
    the time, and a manifest for another model, version or namespace, or an expired one,
    is refused. The operator signs each approved version again before it expires.
  - ``edgeops.dev/bundle-manifest/v2`` (:data:`V2_MANIFEST_SCHEMA`, signed before v3):
    RFC 8785 as well, with namespace, model and version (checked against the binding) but
    no UID and no expiry. Still verified; never signed again.
  - ``edgeops.dev/bundle-manifest/v1`` (:data:`LEGACY_MANIFEST_SCHEMA`): Python
    ``json.dumps`` with sorted keys and no whitespace; namespace, model and version checked
    as for v2. Still verified, so bundles already in S3 and on devices stay valid; never
    signed again.

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
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature

from .canonical import canonical_json, legacy_canonical_json
from .keys import SigningKey, load_public_key

MANIFEST_SCHEMA: Final = "edgeops.dev/bundle-manifest/v3"
V2_MANIFEST_SCHEMA: Final = "edgeops.dev/bundle-manifest/v2"
LEGACY_MANIFEST_SCHEMA: Final = "edgeops.dev/bundle-manifest/v1"
# The canonical encoding each schema is signed in.
_ENCODINGS: Final[Mapping[str, Callable[[Any], bytes]]] = {
    MANIFEST_SCHEMA: canonical_json,
    V2_MANIFEST_SCHEMA: canonical_json,
    LEGACY_MANIFEST_SCHEMA: legacy_canonical_json,
}
_JCS_SCHEMAS: Final = (MANIFEST_SCHEMA, V2_MANIFEST_SCHEMA)
_ENVELOPE_KEYS: Final = {"manifest", "keyId", "signature"}
_ARTIFACT_KEYS: Final = ("name", "format", "uri", "size", "sha256")
# Integers a double holds exactly (I-JSON, RFC 7493 §2.2); JCS treats every number as one.
_SAFE_INTEGER: Final = 2**53 - 1


class VerificationError(Exception):
    """The manifest or an artifact must not be used; the message says why."""


@dataclass(frozen=True)
class Binding:
    """What a verifier expects a manifest to be for: the model version it is about to
    install or serve. ``model_uid`` (when given) must match a v3 manifest's ``modelUid``
    (v1/v2 manifests carry none); the others must match every schema."""

    namespace: str
    model: str
    version: int
    model_uid: str | None = None


def format_expiry(moment: datetime) -> str:
    """``moment`` as the RFC 3339 UTC form ``expiresAt`` uses (``2025-01-31T00:00:00Z``).
    Raises ``ValueError`` for a naive datetime."""
    if moment.tzinfo is None:
        raise ValueError("an expiry needs a timezone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_expiry(text: object) -> datetime:
    """The instant of an ``expiresAt`` value (RFC 3339 with ``Z`` or an offset). Raises
    ``ValueError`` for anything else."""
    if not isinstance(text, str) or "T" not in text:
        raise ValueError(f"expiresAt {text!r} is not an RFC 3339 timestamp")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"expiresAt {text!r} has no timezone")
    return moment


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
    model_uid: str,
    version: int,
    target: Mapping[str, Any],
    artifacts: Sequence[BundleArtifact],
    min_agent_version: str,
    created: str,
    expires_at: str,
) -> dict[str, Any]:
    """The manifest document (schema :data:`MANIFEST_SCHEMA`):

    ``{"schema", "namespace", "model", "modelUid", "version", "target", "minAgentVersion",
    "artifacts": [{"name", "format", "uri", "size", "sha256"}, ...], "created",
    "expiresAt"}``.

    ``target`` carries name, type (linux, mcu, server or index), format and hardware;
    artifacts are sorted by name so the same bundle always has the same bytes;
    ``created`` and ``expires_at`` are RFC 3339 UTC (:func:`format_expiry`). Raises
    ``ValueError`` without artifacts or with an unreadable expiry."""
    if not artifacts:
        raise ValueError("a bundle needs at least one artifact")
    parse_expiry(expires_at)
    return {
        "schema": MANIFEST_SCHEMA,
        "namespace": namespace,
        "model": model,
        "modelUid": model_uid,
        "version": version,
        "target": dict(target),
        "minAgentVersion": min_agent_version,
        "artifacts": [a.to_json() for a in sorted(artifacts, key=lambda a: a.name)],
        "created": created,
        "expiresAt": expires_at,
    }


def sign_manifest(manifest: Mapping[str, Any], key: SigningKey) -> SignedManifest:
    """Signs the RFC 8785 bytes of ``manifest`` with Ed25519.

    Only :data:`MANIFEST_SCHEMA` (v3) documents are signed: ``ValueError`` for another or
    no schema (v1 and v2 are verify-only) and for content JCS cannot carry (NaN, an infinity, an
    integer beyond ±(2**53 - 1), a non-string key, a type that is not JSON).
    """
    document = dict(manifest)
    if document.get("schema") != MANIFEST_SCHEMA:
        raise ValueError(
            f"only {MANIFEST_SCHEMA} manifests are signed, not {document.get('schema')!r}"
        )
    signature = key.private_key().sign(canonical_json(document))
    return SignedManifest(document, key.key_id, base64.b64encode(signature).decode())


def verify_manifest(
    data: bytes, public_keys: Mapping[str, str], *, expected: Binding, now: datetime
) -> dict[str, Any]:
    """The manifest inside a stored signed manifest (v3, v2 or v1, see the module
    docstring), or ``VerificationError``: not JSON, not the canonical bytes of the envelope,
    an unsupported schema, an unknown key, a bad signature, no artifacts, a namespace,
    model, version or model UID other than ``expected``, or (v3) an ``expiresAt`` at or
    before ``now`` (timezone-aware).

    ``public_keys`` maps key id to base64 public key (several during a key rotation); they
    must come from the operator's namespace (or a device's flash), never from an object a
    tenant can edit. The schema, read before the signature is checked, only picks the
    encoding: it is part of the signed bytes, so a changed schema fails the signature.
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
    check_binding(manifest, expected, now)
    return dict(manifest)


def check_binding(manifest: Mapping[str, Any], expected: Binding, now: datetime) -> None:
    """Raises ``VerificationError`` unless the (already signature-checked) manifest is for
    ``expected`` and, when it carries an expiry (v3 always does), not expired at ``now``."""
    for field, want in (
        ("namespace", expected.namespace),
        ("model", expected.model),
        ("version", expected.version),
    ):
        got = manifest.get(field)
        if got != want or isinstance(got, bool):
            raise VerificationError(
                f"manifest is for {field} {got!r}, expected {want!r}: refusing a bundle "
                "signed for another model version"
            )
    schema = manifest.get("schema")
    if schema != MANIFEST_SCHEMA:
        return  # v1/v2: signed before manifests carried a UID and an expiry
    uid = manifest.get("modelUid")
    if not isinstance(uid, str) or not uid:
        raise VerificationError("a v3 manifest must name the model's UID (modelUid)")
    if expected.model_uid is not None and uid != expected.model_uid:
        raise VerificationError(
            f"manifest is for model UID {uid!r}, expected {expected.model_uid!r}: a model "
            "deleted and created again under its name has other versions"
        )
    if now.tzinfo is None:
        raise ValueError("verification needs a timezone-aware current time")
    try:
        expires = parse_expiry(manifest.get("expiresAt"))
    except ValueError as exc:
        raise VerificationError(f"a v3 manifest needs a valid expiresAt: {exc}") from None
    if now >= expires:
        raise VerificationError(
            f"manifest expired at {manifest['expiresAt']} (now {format_expiry(now)}): the "
            "operator re-signs current versions before they expire"
        )


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
    data: bytes,
    public_keys: Mapping[str, str],
    files: Mapping[str, bytes],
    *,
    expected: Binding,
    now: datetime,
) -> dict[str, Any]:
    """Verifies the manifest (:func:`verify_manifest`) and every artifact it lists (files
    by artifact name)."""
    manifest = verify_manifest(data, public_keys, expected=expected, now=now)
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
        if schema in _JCS_SCHEMAS:
            # RFC 8785 numbers are doubles: an integer beyond 2**53 that JCS wrote in full
            # (295147905179352830000) is read back as that double, as a JCS verifier does.
            envelope = json.loads(text, parse_int=_ijson_int, parse_constant=_no_constant)
        canonical = encode(envelope)
    except (ValueError, RecursionError) as exc:
        raise VerificationError(f"cannot canonicalise the signed manifest: {exc}") from None
    if canonical != data:
        # Same document, other bytes: refuse, so verification is over exactly what is stored.
        form = "RFC 8785" if schema in _JCS_SCHEMAS else "v1 sorted json.dumps"
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
