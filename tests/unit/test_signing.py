"""Ed25519 bundle manifests: sign, verify, and reject any tampering."""

from __future__ import annotations

import hashlib
import json

import pytest

from edgeops.signing import (
    LEGACY_MANIFEST_SCHEMA,
    MANIFEST_SCHEMA,
    BundleArtifact,
    VerificationError,
    build_manifest,
    canonical_json,
    generate_key,
    sign_manifest,
    signing_key,
    verify_artifact,
    verify_bundle,
    verify_manifest,
)

MODEL_BYTES = bytes(range(256)) * 8


def _artifact(data: bytes = MODEL_BYTES) -> BundleArtifact:
    return BundleArtifact(
        "model.onnx", "onnx", "s3://b/k", len(data), hashlib.sha256(data).hexdigest()
    )


def _manifest() -> dict[str, object]:
    return build_manifest(
        namespace="ns",
        model="motion",
        version=3,
        target={"name": "pi", "type": "linux", "format": "onnx", "hardware": None},
        artifacts=[_artifact()],
        min_agent_version="0.1.0",
        created="2025-01-01T00:00:00Z",
    )


def test_canonical_json_is_rfc8785_and_refuses_what_jcs_cannot_carry() -> None:
    assert canonical_json({"b": 1.0, "a": [1e-05, "é"]}) == '{"a":[0.00001,"é"],"b":1}'.encode()
    for value in (float("nan"), float("inf"), -float("inf"), 2**53, {1: "int key"}, b"bytes"):
        with pytest.raises(ValueError):
            canonical_json({"x": value})


def test_new_manifests_are_v2_and_only_v2_is_signed() -> None:
    assert _manifest()["schema"] == MANIFEST_SCHEMA == "edgeops.dev/bundle-manifest/v2"
    key = generate_key()
    for schema in (LEGACY_MANIFEST_SCHEMA, None, "edgeops.dev/bundle-manifest/v3"):
        with pytest.raises(ValueError, match=r"only edgeops\.dev/bundle-manifest/v2"):
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
