"""A ``kserve.Model`` serving a verified ONNX artifact with onnxruntime.

V1 (``/v1/models/<name>:predict``, ``{"instances": [[...], ...]}``) returns
``{"predictions": [[class probabilities], ...]}``; V2 (``/v2/models/<name>/infer``) takes
the model's input tensor and returns every ONNX output as an FP32 tensor.

An input that does not fit the model (wrong number of features, shape, datatype, input
name, not numbers) is answered 400 with :class:`BadInputError`'s JSON, which names the
model's input, the shape and the datatype it expects, and what was received; it never
reaches ONNX Runtime (the rules: :mod:`edgeops.serving.inputs`).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import kserve
import numpy as np
import onnxruntime as ort
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from edgeops.signing import Binding

from .inputs import BadInputError, ModelInput, bad_input_handler
from .verify import VerifiedModel, load_verified

__all__ = ["BadInputError", "OnnxPredictor", "bad_input_handler"]


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

    def _input(self) -> ModelInput:
        """The model's input: name and shape (None for a free dimension)."""
        expected = self._session.get_inputs()[0]
        shape = tuple(d if isinstance(d, int) else None for d in expected.shape)
        return ModelInput(str(expected.name), shape)

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs: list[np.ndarray] = self._session.run(None, {self._input().name: batch})
        return outputs

    async def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        if isinstance(payload, InferRequest):
            results = self._run(self._input().v2_batch(payload.inputs))
            names = [o.name for o in self._session.get_outputs()]
            outputs = [
                InferOutput(name=n, shape=list(r.shape), datatype="FP32", data=r.ravel().tolist())
                for n, r in zip(names, results, strict=True)
            ]
            version = str(self.verified.version) if self.verified else None
            # V2 responses carry the request id; a request without one gets a fresh id.
            response_id = payload.id or str(uuid.uuid4())
            return InferResponse(response_id, self.name, outputs, model_version=version)
        probabilities = self._run(self._input().v1_batch(payload))[0]
        return {"predictions": probabilities.tolist()}
