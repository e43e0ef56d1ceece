"""Loading a model directory written by the operator (``model.onnx`` next to the signed
``bundle.json``): nothing is served unless the signature and the file hash check out."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from edgeops.signing import VerificationError, verify_artifact, verify_manifest

MANIFEST_FILE: Final = "bundle.json"
PUBLIC_KEYS_ENV: Final = "EDGEOPS_SIGNING_PUBLIC_KEYS"


@dataclass(frozen=True)
class VerifiedModel:
    data: bytes
    manifest: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])


def public_keys_from_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The ``{keyId: base64 public key}`` JSON the operator publishes in the
    edgeops-signing ConfigMap (key publicKeys.json)."""
    text = (env if env is not None else dict(os.environ)).get(PUBLIC_KEYS_ENV, "")
    if not text:
        raise VerificationError(f"no public keys: set {PUBLIC_KEYS_ENV}")
    keys = json.loads(text)
    if not isinstance(keys, dict) or not keys:
        raise VerificationError(f"{PUBLIC_KEYS_ENV} must be a JSON object of keyId -> key")
    return {str(k): str(v) for k, v in keys.items()}


def load_verified(model_dir: Path, public_keys: dict[str, str]) -> VerifiedModel:
    manifest_path = model_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise VerificationError(f"{manifest_path} is missing: refusing an unsigned model")
    manifest = verify_manifest(manifest_path.read_bytes(), public_keys)
    onnx = [a for a in manifest["artifacts"] if a["format"] == "onnx"]
    if len(onnx) != 1:
        raise VerificationError("the bundle must list exactly one onnx artifact")
    path = model_dir / Path(onnx[0]["name"]).name  # never a path outside model_dir
    if not path.is_file():
        raise VerificationError(f"{path} is missing")
    data = path.read_bytes()
    verify_artifact(data, onnx[0])
    return VerifiedModel(data, manifest)
