"""Publishing a version's signed bundles is idempotent: a retry never re-signs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from edgeops.api.common import ArtifactRef
from edgeops.api.edgemodel import Target
from edgeops.controllers import bundles
from edgeops.signing import generate_key, verify_manifest
from tests.unit.test_datasets_ingest import MemoryStore

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def _publish(
    store: Any, key: Any, now: datetime, uid: str = "0b5e7c1a-uid", model: bytes = b"onnx bytes"
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
    manifest = verify_manifest(before, {key.key_id: key.public_b64})
    assert manifest["version"] == 1


def test_a_model_created_again_under_its_name_gets_its_own_v1() -> None:
    store, key = MemoryStore(), generate_key()
    keys = {key.key_id: key.public_b64}
    old = _publish(store, key, NOW, uid="uid-old", model=b"old model")
    new = _publish(store, key, NOW, uid="uid-new", model=b"new model")
    assert new.manifest_uri != old.manifest_uri and new.signature != old.signature
    for signature, content in ((old, b"old model"), (new, b"new model")):
        index = verify_manifest(store.get_bytes(signature.manifest_uri.split("/", 3)[3]), keys)
        pi4 = next(a for a in index["artifacts"] if a["name"] == "pi4.json")
        target = verify_manifest(store.get_bytes(pi4["uri"].split("/", 3)[3]), keys)
        assert store.get_blob(target["artifacts"][0]["sha256"]) == content
