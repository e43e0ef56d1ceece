"""Ed25519 bundle manifests: sign, verify, and reject any tampering."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeops import signing
from edgeops.signing import (
    LEGACY_MANIFEST_SCHEMA,
    MANIFEST_SCHEMA,
    V2_MANIFEST_SCHEMA,
    Binding,
    BundleArtifact,
    VerificationError,
    build_manifest,
    canonical_json,
    generate_key,
    sign_manifest,
    signing_key,
    verify_artifact,
)

MODEL_BYTES = bytes(range(256)) * 8
EXPECTED = Binding(namespace="ns", model="motion", version=3, model_uid="uid-motion-1")
EXPIRES = "2026-02-01T00:00:00Z"
NOW = datetime(2026, 1, 15, tzinfo=UTC)


def verify_manifest(data: bytes, keys: Mapping[str, str], **binding: Any) -> dict[str, Any]:
    """The manifest's verification as the predictor does it: for EXPECTED, at NOW."""
    return signing.verify_manifest(
        data, keys, expected=binding.get("expected", EXPECTED), now=binding.get("now", NOW)
    )


def verify_bundle(data: bytes, keys: Mapping[str, str], files: Mapping[str, bytes]) -> Any:
    return signing.verify_bundle(data, keys, files, expected=EXPECTED, now=NOW)


def _artifact(data: bytes = MODEL_BYTES) -> BundleArtifact:
    return BundleArtifact(
        "model.onnx", "onnx", "s3://b/k", len(data), hashlib.sha256(data).hexdigest()
    )


def _manifest() -> dict[str, object]:
    return build_manifest(
        namespace="ns",
        model="motion",
        model_uid="uid-motion-1",
        version=3,
        target={"name": "pi", "type": "linux", "format": "onnx", "hardware": None},
        artifacts=[_artifact()],
        min_agent_version="0.1.0",
        created="2026-01-01T00:00:00Z",
        expires_at=EXPIRES,
    )


def test_canonical_json_is_rfc8785_and_refuses_what_jcs_cannot_carry() -> None:
    assert canonical_json({"b": 1.0, "a": [1e-05, "é"]}) == '{"a":[0.00001,"é"],"b":1}'.encode()
    for value in (float("nan"), float("inf"), -float("inf"), 2**53, {1: "int key"}, b"bytes"):
        with pytest.raises(ValueError):
            canonical_json({"x": value})


def test_new_manifests_are_v3_and_only_v3_is_signed() -> None:
    assert _manifest()["schema"] == MANIFEST_SCHEMA == "edgeops.dev/bundle-manifest/v3"
    key = generate_key()
    for schema in (LEGACY_MANIFEST_SCHEMA, V2_MANIFEST_SCHEMA, None, "edgeops.dev/x/v4"):
        with pytest.raises(ValueError, match=r"only edgeops\.dev/bundle-manifest/v3"):
            sign_manifest({**_manifest(), "schema": schema}, key)
    with pytest.raises(ValueError, match="not representable"):
        sign_manifest({**_manifest(), "target": {"threshold": float("nan")}}, key)


def test_signed_manifest_round_trips() -> None:
    key = generate_key()
    data = sign_manifest(_manifest(), key).to_bytes()
    manifest = verify_manifest(data, {key.key_id: key.public_b64})
    assert manifest == _manifest()
    assert verify_bundle(data, {key.key_id: key.public_b64}, {"model.onnx": MODEL_BYTES})


def test_key_survives_storage_and_repr_hides_the_private_half() -> None:
    key = generate_key()
    again = signing_key(key.private_b64)
    assert again.key_id == key.key_id and again.public_b64 == key.public_b64
    assert key.private_b64 not in repr(key)


def test_every_single_byte_flip_of_the_manifest_fails() -> None:
    key = generate_key()
    keys = {key.key_id: key.public_b64}
    data = sign_manifest(_manifest(), key).to_bytes()
    for position in range(len(data)):
        for bit in (0x01, 0x20, 0x80):
            tampered = bytearray(data)
            tampered[position] ^= bit
            with pytest.raises(VerificationError):
                verify_manifest(bytes(tampered), keys)


def test_equivalent_but_non_canonical_bytes_fail() -> None:
    key = generate_key()
    data = sign_manifest(_manifest(), key).to_bytes()
    spaced = data.replace(b'"keyId":', b'"keyId": ')
    with pytest.raises(VerificationError, match="canonical"):
        verify_manifest(spaced, {key.key_id: key.public_b64})
    # The same document in Python's sorted json.dumps form (1.0, not RFC 8785's 1) too.
    manifest = {**_manifest(), "target": {"weight": 1.0}}
    signed = sign_manifest(manifest, key)
    legacy = json.dumps(signed.to_json(), sort_keys=True, separators=(",", ":")).encode()
    assert legacy != signed.to_bytes()
    with pytest.raises(VerificationError, match=r"canonical JSON form \(RFC 8785\)"):
        verify_manifest(legacy, {key.key_id: key.public_b64})


def test_wrong_or_unknown_key_fails() -> None:
    key, other = generate_key(), generate_key()
    data = sign_manifest(_manifest(), key).to_bytes()
    with pytest.raises(VerificationError, match="unknown key"):
        verify_manifest(data, {other.key_id: other.public_b64})
    with pytest.raises(VerificationError, match="does not match"):
        verify_manifest(data, {key.key_id: other.public_b64})


def test_a_manifest_with_changed_content_and_old_signature_fails() -> None:
    key = generate_key()
    signed = sign_manifest(_manifest(), key)
    forged = dict(signed.manifest, version=4)
    data = canonical_json({"manifest": forged, "keyId": key.key_id, "signature": signed.signature})
    with pytest.raises(VerificationError, match="does not match"):
        verify_manifest(data, {key.key_id: key.public_b64})


@pytest.mark.parametrize("position", [0, 1, len(MODEL_BYTES) // 2, len(MODEL_BYTES) - 1])
def test_any_artifact_byte_flip_fails(position: int) -> None:
    tampered = bytearray(MODEL_BYTES)
    tampered[position] ^= 0x01
    with pytest.raises(VerificationError, match="sha256"):
        verify_artifact(bytes(tampered), _artifact().to_json())


def test_truncated_or_missing_artifact_fails() -> None:
    key = generate_key()
    data = sign_manifest(_manifest(), key).to_bytes()
    keys = {key.key_id: key.public_b64}
    with pytest.raises(VerificationError, match="size"):
        verify_bundle(data, keys, {"model.onnx": MODEL_BYTES[:-1]})
    with pytest.raises(VerificationError, match="missing"):
        verify_bundle(data, keys, {})


def test_garbage_is_rejected_not_crashing() -> None:
    key = generate_key()
    deep = b"[" * 100_000 + b"]" * 100_000

    def envelope(manifest: bytes) -> bytes:
        return b'{"keyId":"a","manifest":' + manifest + b',"signature":"b"}'

    def v2(member: bytes) -> bytes:
        return envelope(b'{"schema":"edgeops.dev/bundle-manifest/v2","x":' + member + b"}")

    for data in (
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"manifest":1,"keyId":"a","signature":"b"}',
        envelope(b'{"schema":"x"}'),
        envelope(deep),
        v2(b"NaN"),
        v2(b"1e999"),
        v2(b"9" * 400),
        v2(deep),
    ):
        with pytest.raises(VerificationError):
            verify_manifest(data, {key.key_id: key.public_b64})


# --- binding and expiry (issue 17 item 3) ----------------------------------------------


@pytest.mark.parametrize(
    ("expected", "field"),
    [
        (Binding("other-ns", "motion", 3, "uid-motion-1"), "namespace"),
        (Binding("ns", "other-model", 3, "uid-motion-1"), "model"),
        (Binding("ns", "motion", 4, "uid-motion-1"), "version"),
        (Binding("ns", "motion", 3, "uid-of-a-recreated-model"), "model UID"),
    ],
)
def test_a_manifest_for_another_model_version_is_refused(expected: Binding, field: str) -> None:
    key = generate_key()
    data = sign_manifest(_manifest(), key).to_bytes()
    keys = {key.key_id: key.public_b64}
    with pytest.raises(VerificationError, match=f"manifest is for {field}"):
        verify_manifest(data, keys, expected=expected)
    with pytest.raises(VerificationError, match=f"manifest is for {field}"):
        signing.verify_bundle(data, keys, {"model.onnx": MODEL_BYTES}, expected=expected, now=NOW)
    # Without a UID to compare, the rest of the binding still counts.
    assert verify_manifest(data, keys, expected=Binding("ns", "motion", 3))["version"] == 3


def test_an_expired_manifest_is_refused_and_a_naive_clock_is_an_error() -> None:
    key = generate_key()
    data = sign_manifest(_manifest(), key).to_bytes()
    keys = {key.key_id: key.public_b64}
    expires = datetime(2026, 2, 1, tzinfo=UTC)
    assert verify_manifest(data, keys, now=expires - timedelta(seconds=1))
    for now in (expires, expires + timedelta(days=400)):
        with pytest.raises(VerificationError, match="expired at 2026-02-01T00:00:00Z"):
            verify_manifest(data, keys, now=now)
    with pytest.raises(ValueError, match="timezone"):
        verify_manifest(data, keys, now=datetime(2026, 1, 15))


def test_a_signed_v3_manifest_without_uid_or_expiry_is_refused() -> None:
    key = generate_key()
    keys = {key.key_id: key.public_b64}
    for field, value in (
        ("modelUid", None),
        ("expiresAt", None),
        ("expiresAt", "next year"),
        ("version", True),
    ):
        manifest = {**_manifest(), field: value}
        if value is None:
            del manifest[field]
        data = sign_manifest(manifest, key).to_bytes()  # validly signed, badly bound
        binding = Binding("ns", "motion", 1) if field == "version" else EXPECTED
        with pytest.raises(VerificationError):
            verify_manifest(data, keys, expected=binding)


def test_build_manifest_refuses_an_unreadable_expiry() -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        build_manifest(**{**_build_args(), "expires_at": "tomorrow"})
    with pytest.raises(ValueError, match="timezone"):
        build_manifest(**{**_build_args(), "expires_at": "2026-02-01T00:00:00"})
    assert signing.format_expiry(datetime(2026, 2, 1, 1, tzinfo=UTC)) == "2026-02-01T01:00:00Z"


def _build_args() -> dict[str, Any]:
    manifest = _manifest()
    return {
        "namespace": manifest["namespace"],
        "model": manifest["model"],
        "model_uid": manifest["modelUid"],
        "version": manifest["version"],
        "target": manifest["target"],
        "artifacts": [_artifact()],
        "min_agent_version": manifest["minAgentVersion"],
        "created": manifest["created"],
        "expires_at": manifest["expiresAt"],
    }
