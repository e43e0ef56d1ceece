"""Ed25519 signing and verification of bundle manifests, shared by the operator, the
gateway, the predictor and the device agent. What is signed is canonicalised with RFC 8785
(JCS), so firmware in any language verifies the same bytes; a manifest binds namespace,
model (name and UID), version and an expiry, which verification checks. Manifests signed
before (schemas v1 and v2) still verify. Imports only ``cryptography``, ``rfc8785`` (pure
Python, through ``edgeops.canonical_json``) and the standard library, so an agent can
vendor it with ``edgeops/canonical_json.py``."""

from __future__ import annotations

from .bundle import (
    LEGACY_MANIFEST_SCHEMA,
    MANIFEST_SCHEMA,
    V2_MANIFEST_SCHEMA,
    Binding,
    BundleArtifact,
    SignedManifest,
    VerificationError,
    build_manifest,
    check_binding,
    format_expiry,
    parse_expiry,
    sign_manifest,
    verify_artifact,
    verify_bundle,
    verify_manifest,
)
from .canonical import canonical_json
from .keys import (
    SigningKey,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    signing_key,
)

__all__ = [
    "LEGACY_MANIFEST_SCHEMA",
    "MANIFEST_SCHEMA",
    "V2_MANIFEST_SCHEMA",
    "Binding",
    "BundleArtifact",
    "SignedManifest",
    "SigningKey",
    "VerificationError",
    "build_manifest",
    "canonical_json",
    "check_binding",
    "format_expiry",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "parse_expiry",
    "sign_manifest",
    "signing_key",
    "verify_artifact",
    "verify_bundle",
    "verify_manifest",
]
