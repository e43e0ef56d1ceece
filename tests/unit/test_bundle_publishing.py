"""Publishing a version's signed bundles is idempotent: a retry never re-signs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeops.api.common import ArtifactRef
from edgeops.api.edgemodel import Target
from edgeops.controllers import bundles
from edgeops.signing import Binding, VerificationError, generate_key, verify_manifest
from tests.unit.test_datasets_ingest import MemoryStore

NOW = datetime(2026, 5, 1, tzinfo=UTC)
VALIDITY = timedelta(days=30)


def _publish(
    store: Any,
    key: Any,
    now: datetime,
    uid: str = "0b5e7c1a-uid",
    model: bytes = b"onnx bytes",
    resign: bool = False,
) -> Any:
    onnx = store.put_blob(model)
    artifact = ArtifactRef(
        uri=f"s3://edgeops/{onnx.key}", size=onnx.size, sha256=onnx.sha256, format="onnx"
    )
    target = Target.model_validate({"name": "pi4", "targetType": "linux", "format": "onnx"})
    return bundles.publish(
        store,
        key,
        namespace="ns",
        model="m",
        uid=uid,
        number=1,
        targets=[target],
        artifacts=[artifact],
        now=now,
        validity=VALIDITY,
        resign=resign,
    )


def test_retry_returns_the_first_signature_and_keeps_the_bytes() -> None:
    store, key = MemoryStore(), generate_key()
    first = _publish(store, key, NOW)
    index_key = first.manifest_uri.removeprefix("s3://edgeops/")
    before = store.get_bytes(index_key)
    # A later retry (another key even, after a rotation) must not produce a second manifest.
    second = _publish(store, generate_key(), NOW + timedelta(minutes=5))
    assert second == first
    assert store.get_bytes(index_key) == before
    binding = Binding("ns", "m", 1, "0b5e7c1a-uid")
    manifest = verify_manifest(before, {key.key_id: key.public_b64}, expected=binding, now=NOW)
    assert manifest["version"] == 1 and manifest["expiresAt"] == "2026-05-31T00:00:00Z"
    assert first.expires_at == "2026-05-31T00:00:00Z"


def test_a_model_created_again_under_its_name_gets_its_own_v1() -> None:
    store, key = MemoryStore(), generate_key()
    keys = {key.key_id: key.public_b64}
    old = _publish(store, key, NOW, uid="uid-old", model=b"old model")
    new = _publish(store, key, NOW, uid="uid-new", model=b"new model")
    assert new.manifest_uri != old.manifest_uri and new.signature != old.signature
    for signature, content, uid in ((old, b"old model", "uid-old"), (new, b"new model", "uid-new")):
        binding = Binding("ns", "m", 1, uid)
        index = verify_manifest(
            store.get_bytes(signature.manifest_uri.split("/", 3)[3]),
            keys,
            expected=binding,
            now=NOW,
        )
        pi4 = next(a for a in index["artifacts"] if a["name"] == "pi4.json")
        target = verify_manifest(
            store.get_bytes(pi4["uri"].split("/", 3)[3]), keys, expected=binding, now=NOW
        )
        assert store.get_blob(target["artifacts"][0]["sha256"]) == content
        # The other model's manifests are not this one's, though name and number agree.
        other = Binding("ns", "m", 1, "uid-new" if uid == "uid-old" else "uid-old")
        with pytest.raises(VerificationError, match="model UID"):
            verify_manifest(
                store.get_bytes(pi4["uri"].split("/", 3)[3]), keys, expected=other, now=NOW
            )


def test_resigning_before_expiry_extends_it_with_the_same_artifacts() -> None:
    store, key = MemoryStore(), generate_key()
    keys = {key.key_id: key.public_b64}
    binding = Binding("ns", "m", 1, "0b5e7c1a-uid")
    first = _publish(store, key, NOW)
    due = bundles.resign_due(first, VALIDITY)
    assert due == datetime(2026, 5, 21, tzinfo=UTC)  # a third of the validity before expiry
    index_key = first.manifest_uri.removeprefix("s3://edgeops/")
    late = datetime(2026, 6, 1, tzinfo=UTC)
    with pytest.raises(VerificationError, match="expired"):
        verify_manifest(store.get_bytes(index_key), keys, expected=binding, now=late)
    again = _publish(store, key, due, resign=True)
    assert again.manifest_uri == first.manifest_uri and again.expires_at == "2026-06-20T00:00:00Z"
    index = verify_manifest(store.get_bytes(index_key), keys, expected=binding, now=late)
    pi4 = next(a for a in index["artifacts"] if a["name"] == "pi4.json")
    target = verify_manifest(
        store.get_bytes(pi4["uri"].split("/", 3)[3]), keys, expected=binding, now=late
    )
    assert store.get_blob(target["artifacts"][0]["sha256"]) == b"onnx bytes"
    assert bundles.resign_due(None, VALIDITY) is None


def test_the_index_binds_the_model_card() -> None:
    store, key = MemoryStore(), generate_key()
    card = store.put_blob(b"# Model card\n| accuracy | 0.9100 |\n")
    onnx = store.put_blob(b"onnx bytes")
    artifacts = [
        ArtifactRef(uri=f"s3://edgeops/{ref.key}", size=ref.size, sha256=ref.sha256, format=fmt)
        for ref, fmt in ((onnx, "onnx"), (card, "model-card"))
    ]
    target = Target.model_validate({"name": "pi4", "targetType": "linux", "format": "onnx"})
    signature = bundles.publish(
        store, key, namespace="ns", model="m", uid="u", number=1, targets=[target],
        artifacts=artifacts, now=NOW, validity=VALIDITY,
    )  # fmt: skip
    index = verify_manifest(
        store.get_bytes(signature.manifest_uri.removeprefix("s3://edgeops/")),
        {key.key_id: key.public_b64},
        expected=Binding("ns", "m", 1, "u"),
        now=NOW,
    )
    entry = next(a for a in index["artifacts"] if a["format"] == "model-card")
    assert (entry["name"], entry["sha256"], entry["size"]) == (
        "MODEL_CARD.md",
        card.sha256,
        card.size,
    )
