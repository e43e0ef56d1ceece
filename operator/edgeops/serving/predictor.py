"""A ``kserve.Model`` serving a verified ONNX artifact with onnxruntime.

V1 (``/v1/models/<name>:predict``, ``{"instances": [[...], ...]}``) returns
``{"predictions": [[class probabilities], ...]}``; V2 (``/v2/models/<name>/infer``) takes
the model's input tensor and returns every ONNX output as an FP32 tensor.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import kserve
import numpy as np
import onnxruntime as ort
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from edgeops.signing import Binding

from .verify import VerifiedModel, load_verified


class OnnxPredictor(kserve.Model):  # type: ignore[misc]
    def __init__(
        self, name: str, model_dir: Path, public_keys: dict[str, str], expected: Binding
    ) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.public_keys = public_keys
        self.expected = expected
        self.verified: VerifiedModel | None = None
        self._session: Any = None

    def load(self) -> bool:
        # Verification errors propagate: a tampered model must stop the server, not serve.
        self.verified = load_verified(self.model_dir, self.public_keys, self.expected)
        self._session = ort.InferenceSession(self.verified.data, providers=["CPUExecutionProvider"])
        self.ready = True
        return True

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        session = self._session
        expected = session.get_inputs()[0]
        if batch.ndim != len(expected.shape):
            raise InvalidInput(
                f"input must have {len(expected.shape)} dimensions {expected.shape}, "
                f"got shape {list(batch.shape)}"
            )
        outputs: list[np.ndarray] = session.run(None, {expected.name: batch.astype(np.float32)})
        return outputs

    async def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        if isinstance(payload, InferRequest):
            batch = payload.inputs[0].as_numpy()
            results = self._run(batch)
            names = [o.name for o in self._session.get_outputs()]
            outputs = [
                InferOutput(name=n, shape=list(r.shape), datatype="FP32", data=r.ravel().tolist())
                for n, r in zip(names, results, strict=True)
            ]
            version = str(self.verified.version) if self.verified else None
            # V2 responses carry the request id; a request without one gets a fresh id.
            response_id = payload.id or str(uuid.uuid4())
            return InferResponse(response_id, self.name, outputs, model_version=version)
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('expected {"instances": [[feature, ...], ...]}')
        probabilities = self._run(np.asarray(instances, dtype=np.float32))[0]
        return {"predictions": probabilities.tolist()}
