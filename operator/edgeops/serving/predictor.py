"""A ``kserve.Model`` serving a verified ONNX artifact with onnxruntime.

V1 (``/v1/models/<name>:predict``, ``{"instances": [[...], ...]}``) returns
``{"predictions": [[class probabilities], ...]}``; V2 (``/v2/models/<name>/infer``) takes
the model's input tensor and returns every ONNX output as an FP32 tensor.

An input that does not fit the model (wrong number of features, shape, datatype, not
numbers) is answered 400 with :class:`BadInputError`'s JSON, which names the model's
input, the shape and the datatype it expects, and what was received; it never reaches
ONNX Runtime.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Final

import kserve
import numpy as np
import onnxruntime as ort
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from starlette.responses import JSONResponse

from edgeops.signing import Binding

from .verify import VerifiedModel, load_verified

#: V2 datatypes accepted (converted to the model's float32 input).
NUMERIC_DATATYPES: Final = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32"}
)


class BadInputError(InvalidInput):  # type: ignore[misc]
    """A request whose input does not fit the model: answered 400 with
    :meth:`document` (``error``, ``input``, ``expectedShape``, ``expectedDatatype``,
    ``received``)."""

    def __init__(self, message: str, name: str, shape: list[Any], received: dict[str, Any]) -> None:
        super().__init__(message)
        self.message, self.name, self.shape, self.received = message, name, shape, received

    def document(self) -> dict[str, Any]:
        return {
            "error": self.message,
            "input": self.name,
            "expectedShape": self.shape,
            "expectedDatatype": "FP32",
            "received": self.received,
        }


async def bad_input_handler(_: Any, exc: BadInputError) -> JSONResponse:
    """FastAPI exception handler for :class:`BadInputError` (400)."""
    return JSONResponse(status_code=400, content=exc.document())


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

    def _expected(self) -> tuple[str, list[Any]]:
        """The model's input name and shape (None or a name for a free dimension)."""
        expected = self._session.get_inputs()[0]
        shape = [d if isinstance(d, int) else None for d in expected.shape]
        return str(expected.name), shape

    def _bad(self, message: str, received: dict[str, Any]) -> BadInputError:
        name, shape = self._expected()
        return BadInputError(
            f"{message}; input {name!r} expects shape {shape} of FP32", name, shape, received
        )

    def _check(self, batch: np.ndarray) -> np.ndarray:
        """The batch as float32 when its shape fits the model's input; BadInputError if not."""
        _, shape = self._expected()
        received = {"shape": list(batch.shape), "datatype": str(batch.dtype)}
        if batch.ndim != len(shape):
            raise self._bad(
                f"expected {len(shape)} dimensions, got shape {list(batch.shape)}", received
            )
        for axis, (want, got) in enumerate(zip(shape, batch.shape, strict=True)):
            if want is not None and want != got:
                what = "features" if axis == len(shape) - 1 else f"entries on axis {axis}"
                raise self._bad(f"expected {want} {what}, got {got}", received)
        if batch.dtype.kind not in "fiub":
            raise self._bad(f"expected numbers, got {batch.dtype}", received)
        converted = batch.astype(np.float32)
        if not np.all(np.isfinite(converted)):
            raise self._bad("expected finite numbers (no NaN, no infinity)", received)
        return converted

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        name, _ = self._expected()
        outputs: list[np.ndarray] = self._session.run(None, {name: self._check(batch)})
        return outputs

    async def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        if isinstance(payload, InferRequest):
            results = self._run(self._v2_batch(payload))
            names = [o.name for o in self._session.get_outputs()]
            outputs = [
                InferOutput(name=n, shape=list(r.shape), datatype="FP32", data=r.ravel().tolist())
                for n, r in zip(names, results, strict=True)
            ]
            version = str(self.verified.version) if self.verified else None
            # V2 responses carry the request id; a request without one gets a fresh id.
            response_id = payload.id or str(uuid.uuid4())
            return InferResponse(response_id, self.name, outputs, model_version=version)
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not instances:
            raise self._bad('expected {"instances": [[feature, ...], ...]}', {})
        try:
            batch = np.asarray(instances)
        except (ValueError, TypeError):
            # Ragged rows (instances of different lengths) or nested non-numbers.
            lengths = sorted({len(i) for i in instances if isinstance(i, list)})
            raise self._bad(
                "instances must all have the same number of features", {"featureCounts": lengths}
            ) from None
        probabilities = self._run(batch)[0]
        return {"predictions": probabilities.tolist()}

    def _v2_batch(self, payload: InferRequest) -> np.ndarray:
        """The V2 request's one input tensor, checked against what the model expects."""
        if len(payload.inputs) != 1:
            raise self._bad(
                f"expected exactly one input tensor, got {len(payload.inputs)}",
                {"inputs": [i.name for i in payload.inputs][:8]},
            )
        tensor = payload.inputs[0]
        received = {"name": tensor.name, "shape": list(tensor.shape), "datatype": tensor.datatype}
        if tensor.datatype not in NUMERIC_DATATYPES:
            raise self._bad(f"datatype {tensor.datatype} is not numeric", received)
        try:
            return np.asarray(tensor.as_numpy())
        except (ValueError, TypeError) as error:
            # The data does not fill the declared shape, or is not of the datatype.
            raise self._bad(
                f"data does not match shape {list(tensor.shape)} and datatype "
                f"{tensor.datatype} ({type(error).__name__})",
                received,
            ) from None
