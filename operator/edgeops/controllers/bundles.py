"""Signed bundles of an approved version, written to S3 before the version is recorded:

* ``models/<ns>/<model>/<uid>/versions/<n>/bundles/<target>.json`` - one per target: the
  artifact that target installs, its size and SHA-256, model version, min agent version;
* ``.../serving/model.onnx`` and ``.../serving/bundle.json`` - the cloud predictor's copy;
* ``.../bundles.json`` - the version index, whose entries are the per-target manifests
  (hash-chained) and the model card (``MODEL_CARD.md``, written by EdgeOps's evaluator),
  and whose signature is the one shown in status.

Every manifest binds namespace, model name and UID, version and ``expiresAt``
(:mod:`edgeops.signing`); :func:`publish` with ``resign=True`` writes them all again with
a later expiry (same artifacts), before the old ones expire.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from edgeops import __version__
from edgeops.api.common import ArtifactRef, format_time
from edgeops.api.edgemodel import Signature, Target
from edgeops.policy.serving import model_prefix, serving_prefix
from edgeops.signing import (
    BundleArtifact,
    SigningKey,
    build_manifest,
    format_expiry,
    sign_manifest,
)
from edgeops.store import ArtifactStore

FILE_NAMES: Final = {
    "onnx": "model.onnx",
    "tflite": "model.tflite",
    "tflite-int8": "model_int8.tflite",
    "tflm": "model_tflm.tar",
}
MIN_AGENT_VERSION: Final = __version__


def version_prefix(namespace: str, model: str, uid: str, number: int) -> str:
    return f"{model_prefix(namespace, model, uid)}/versions/{number}"


def registry_key(namespace: str, model: str, uid: str) -> str:
    return f"{model_prefix(namespace, model, uid)}/registry.json"


def _artifact(ref: ArtifactRef) -> BundleArtifact:
    return BundleArtifact(FILE_NAMES[ref.format], ref.format, ref.uri, ref.size, ref.sha256)


def publish(
    store: ArtifactStore,
    key: SigningKey,
    *,
    namespace: str,
    model: str,
    uid: str,
    number: int,
    targets: Sequence[Target],
    artifacts: Sequence[ArtifactRef],
    now: datetime,
    validity: timedelta,
    resign: bool = False,
) -> Signature:
    """Writes every signed manifest of the version, valid until ``now + validity``; the
    index last, so whoever finds the index finds everything it references. Without
    ``resign`` an index already there is kept (the status write after it failed, or the
    operator restarted). Raises ``ValueError`` for a target without its artifact and
    ``StoreError``."""
    prefix = version_prefix(namespace, model, uid, number)
    index_key = f"{prefix}/bundles.json"
    if not resign and store.exists(index_key):
        # Published before (the status write after it failed, or the operator restarted):
        # the version keeps the bytes and signature devices may already hold.
        existing = json.loads(store.get_bytes(index_key))
        return Signature(
            key_id=existing["keyId"],
            manifest_uri=f"s3://{store.bucket}/{index_key}",
            signature=existing["signature"],
            expires_at=existing["manifest"].get("expiresAt"),
        )
    created = format_time(now)
    expires_at = format_expiry(now + validity)
    by_format = {a.format: a for a in artifacts}
    entries: list[BundleArtifact] = []

    def put_signed(key_name: str, manifest: dict[str, Any], name: str) -> None:
        data = sign_manifest(manifest, key).to_bytes()
        store.put_bytes(key_name, data, "application/json")
        ref = store.put_blob(data)
        entries.append(
            BundleArtifact(
                name, "bundle-manifest", f"s3://{store.bucket}/{key_name}", ref.size, ref.sha256
            )
        )

    for target in targets:
        ref = by_format.get(target.format)
        if ref is None:
            raise ValueError(f"target {target.name}: no {target.format} artifact to sign")
        manifest = build_manifest(
            namespace=namespace,
            model=model,
            model_uid=uid,
            version=number,
            target={
                "name": target.name,
                "type": target.target_type,
                "format": target.format,
                "hardware": target.hardware,
            },
            artifacts=[_artifact(ref)],
            min_agent_version=MIN_AGENT_VERSION,
            created=created,
            expires_at=expires_at,
        )
        put_signed(f"{prefix}/bundles/{target.name}.json", manifest, f"{target.name}.json")
    onnx = by_format.get("onnx")
    if onnx is not None:
        serving = serving_prefix(namespace, model, uid, number)
        # The storage initializer downloads a prefix: give the model a file name next to
        # the manifest that lets the predictor verify it.
        store.put_bytes(f"{serving}/model.onnx", store.get_blob(onnx.sha256))
        copy = BundleArtifact(
            "model.onnx",
            "onnx",
            f"s3://{store.bucket}/{serving}/model.onnx",
            onnx.size,
            onnx.sha256,
        )
        manifest = build_manifest(
            namespace=namespace,
            model=model,
            model_uid=uid,
            version=number,
            target={"name": "kserve", "type": "server", "format": "onnx", "hardware": None},
            artifacts=[copy],
            min_agent_version=MIN_AGENT_VERSION,
            created=created,
            expires_at=expires_at,
        )
        put_signed(f"{serving}/bundle.json", manifest, "kserve.json")
    card = by_format.get("model-card")
    if card is not None:
        # The evaluator's model card (the measured metrics, the trainer's claims labelled
        # untrusted): the signed index binds it to this version.
        entries.append(
            BundleArtifact("MODEL_CARD.md", "model-card", card.uri, card.size, card.sha256)
        )
    index = build_manifest(
        namespace=namespace,
        model=model,
        model_uid=uid,
        version=number,
        target={"name": "index", "type": "index", "format": "bundle-manifest", "hardware": None},
        artifacts=entries,
        min_agent_version=MIN_AGENT_VERSION,
        created=created,
        expires_at=expires_at,
    )
    signed = sign_manifest(index, key)
    store.put_bytes(index_key, signed.to_bytes(), "application/json")
    return Signature(
        key_id=signed.key_id,
        manifest_uri=f"s3://{store.bucket}/{index_key}",
        signature=signed.signature,
        expires_at=expires_at,
    )


def resign_due(signature: Signature | None, validity: timedelta) -> datetime | None:
    """When a version's bundles are to be signed again: a third of ``validity`` before
    they expire. None when unsigned, or signed before manifests carried an expiry (v1/v2
    bundles stay as devices hold them, never re-signed)."""
    if signature is None or signature.expires_at is None:
        return None
    expires = datetime.fromisoformat(signature.expires_at.replace("Z", "+00:00"))
    return expires - validity / 3
