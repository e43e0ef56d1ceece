"""Requests checked against the model's input before ONNX Runtime sees them (issue 16
item 10): a wrong feature count, a non-numeric datatype (``BYTES``, ``BOOL``), data that
does not fill its declared shape or is not of its declared datatype, or an input name the
model does not have is answered 400 with :meth:`BadInputError.document`, never a 500 from
ONNX Runtime or numpy.

Pure (numpy and KServe's protocol types only), so every rule is unit-tested without a
server; :class:`edgeops.serving.predictor.OnnxPredictor` applies it to both protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput
from kserve.utils.numpy_codec import from_np_dtype
from starlette.responses import JSONResponse

#: V2 datatypes accepted (converted to the model's float32 input).
NUMERIC_DATATYPES: Final = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32"}
)
#: The datatype every EdgeOps ONNX export takes.
EXPECTED_DATATYPE: Final = "FP32"


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
            "expectedDatatype": EXPECTED_DATATYPE,
            "received": self.received,
        }


async def bad_input_handler(_: Any, exc: BadInputError) -> JSONResponse:
    """FastAPI exception handler for :class:`BadInputError` (400)."""
    return JSONResponse(status_code=400, content=exc.document())


def _datatype(array: np.ndarray[Any, Any]) -> str:
    """The V2 name of a numpy dtype (``FP64``, ``INT64``, ``BYTES`` for strings and
    objects, ``BOOL``), so a V1 answer speaks the same words as a V2 one."""
    try:
        return str(from_np_dtype(array.dtype))
    except Exception:  # a dtype KServe has no name for
        return str(array.dtype)


@dataclass(frozen=True)
class ModelInput:
    """The model's one input: its ``name`` and ``shape`` (None for a free dimension, e.g.
    ``(None, 6)`` for a batch of 6 features), datatype FP32."""

    name: str
    shape: tuple[int | None, ...]

    def bad(self, message: str, received: dict[str, Any]) -> BadInputError:
        """The 400 for ``message``, naming the input, shape and datatype expected."""
        shape = list(self.shape)
        return BadInputError(
            f"{message}; input {self.name!r} expects shape {shape} of {EXPECTED_DATATYPE}",
            self.name,
            shape,
            received,
        )

    def check(self, batch: np.ndarray[Any, Any], received: dict[str, Any]) -> np.ndarray[Any, Any]:
        """``batch`` as float32 when its shape and values fit the input. Raises
        :class:`BadInputError` naming what was ``received``."""
        if batch.ndim != len(self.shape):
            raise self.bad(
                f"expected {len(self.shape)} dimensions, got shape {list(batch.shape)}", received
            )
        for axis, (want, got) in enumerate(zip(self.shape, batch.shape, strict=True)):
            if want is not None and want != got:
                what = "features" if axis == len(self.shape) - 1 else f"entries on axis {axis}"
                raise self.bad(f"expected {want} {what}, got {got}", received)
        # Booleans are refused as V2's BOOL is: true is no sensor reading.
        if batch.dtype.kind not in "fiu":
            raise self.bad(f"expected numbers, got {_datatype(batch)}", received)
        converted = batch.astype(np.float32)
        if not np.all(np.isfinite(converted)):
            raise self.bad("expected finite numbers (no NaN, no infinity)", received)
        return converted

    def v1_batch(self, payload: Any) -> np.ndarray[Any, Any]:
        """The float32 batch of a V1 ``{"instances": [[feature, ...], ...]}`` body."""
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not instances:
            raise self.bad('expected {"instances": [[feature, ...], ...]}', {})
        try:
            batch = np.asarray(instances)
        except (ValueError, TypeError):
            # Ragged rows (instances of different lengths) or nested non-numbers.
            lengths = sorted({len(i) for i in instances if isinstance(i, list)})
            raise self.bad(
                "instances must all have the same number of features", {"featureCounts": lengths}
            ) from None
        received = {"shape": list(batch.shape), "datatype": _datatype(batch)}
        return self.check(batch, received)

    def v2_batch(self, inputs: Sequence[InferInput]) -> np.ndarray[Any, Any]:
        """The float32 batch of a V2 request's one input tensor."""
        if len(inputs) != 1:
            raise self.bad(
                f"expected exactly one input tensor, got {len(inputs)}",
                {"inputs": [i.name for i in inputs][:8]},
            )
        tensor = inputs[0]
        received = {"name": tensor.name, "shape": list(tensor.shape), "datatype": tensor.datatype}
        if tensor.name != self.name:
            raise self.bad(f"the model has no input {tensor.name!r}", received)
        if tensor.datatype not in NUMERIC_DATATYPES:
            raise self.bad(f"datatype {tensor.datatype} is not numeric", received)
        raw = tensor.data
        if isinstance(raw, list):
            # numpy would truncate 0.5 to an INT32 0, or parse "1" as a number: the data must
            # be of its declared datatype.
            values = np.asarray(raw, dtype=object).ravel() if raw else np.asarray([])
            integral = tensor.datatype.startswith(("INT", "UINT"))
            for value in values:
                number = isinstance(value, int | float) and not isinstance(value, bool)
                if not number or (integral and not float(value).is_integer()):
                    raise self.bad(
                        f"data holds {value!r}, which is not of datatype {tensor.datatype}",
                        received,
                    )
        try:
            batch = np.asarray(tensor.as_numpy())
        except (ValueError, TypeError) as error:
            # The data does not fill the declared shape (or cannot be read as the datatype).
            count = len(np.asarray(raw, dtype=object).ravel()) if isinstance(raw, list) else None
            size = int(np.prod(tensor.shape)) if tensor.shape else 0
            detail = f"{count} values" if count is not None else type(error).__name__
            raise self.bad(
                f"data does not match shape {list(tensor.shape)} ({size} values) and datatype "
                f"{tensor.datatype}: got {detail}",
                received,
            ) from None
        return self.check(batch, received)
