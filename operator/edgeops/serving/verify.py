"""Loading a model directory written by the operator (``model.onnx`` next to the signed
``bundle.json``): nothing is served unless the signature, the binding (namespace, model,
model UID, version), the expiry and the file hash check out. The public keys and the
binding come from ``EDGEOPS_*`` variables the operator sets
(:func:`edgeops.settings.predictor_settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from edgeops.signing import Binding, VerificationError, verify_artifact, verify_manifest

MANIFEST_FILE: Final = "bundle.json"


@dataclass(frozen=True)
class VerifiedModel:
    """An ONNX model whose bytes match the signed manifest."""

    data: bytes
    manifest: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])


def load_verified(
    model_dir: Path,
    public_keys: dict[str, str],
    expected: Binding,
    now: datetime | None = None,
) -> VerifiedModel:
    """The ONNX artifact of ``model_dir``, once its manifest's signature (by one of
    ``public_keys``, ``{keyId: base64 key}``), its binding to ``expected``, its expiry
    (at ``now``, default the current time) and the artifact's hash check out.

    Raises:
        VerificationError: the manifest or the artifact is missing, unsigned, altered,
            signed for another model version, or expired.
    """
    manifest_path = model_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise VerificationError(f"{manifest_path} is missing: refusing an unsigned model")
    manifest = verify_manifest(
        manifest_path.read_bytes(),
        public_keys,
        expected=expected,
        now=now or datetime.now(UTC),
    )
    onnx = [a for a in manifest["artifacts"] if a["format"] == "onnx"]
    if len(onnx) != 1:
        raise VerificationError("the bundle must list exactly one onnx artifact")
    path = model_dir / Path(onnx[0]["name"]).name  # never a path outside model_dir
    if not path.is_file():
        raise VerificationError(f"{path} is missing")
    data = path.read_bytes()
    verify_artifact(data, onnx[0])
    return VerifiedModel(data, manifest)
