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


def _publish(store: Any, key: Any, now: datetime) -> Any:
    onnx = store.put_blob(b"onnx bytes")
    artifact = ArtifactRef(
        uri=f"s3://edgeops/{onnx.key}", size=onnx.size, sha256=onnx.sha256, format="onnx"
    )
    target = Target.model_validate({"name": "pi4", "targetType": "linux", "format": "onnx"})
    return bundles.publish(
        store,
        key,
        namespace="ns",
        model="m",
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
