"""Ed25519 signing and verification of bundle manifests, shared by the operator, the
gateway and the device agent. Imports only ``cryptography`` and the standard library so an
agent can vendor it."""

from __future__ import annotations

from .bundle import (
    MANIFEST_SCHEMA,
    BundleArtifact,
    SignedManifest,
    VerificationError,
    build_manifest,
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
    "MANIFEST_SCHEMA",
    "BundleArtifact",
    "SignedManifest",
    "SigningKey",
    "VerificationError",
    "build_manifest",
    "canonical_json",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "sign_manifest",
    "signing_key",
    "verify_artifact",
    "verify_bundle",
    "verify_manifest",
]
