"""Requests checked against the model's input before ONNX Runtime sees them (issue 16
item 10): a wrong feature count, a non-numeric datatype (``BYTES``, ``BOOL``), data that
does not fill its declared shape or is not of its declared datatype (an integer outside the
datatype's range included), a negative dimension, or an input name the model does not have
is answered 400 with :meth:`BadInputError.document`, never a 500 from ONNX Runtime or numpy.
Values in messages are written as JSON (``null``, ``true``, ``"a"``), the client's words.

Pure (numpy and KServe's protocol types only), so every rule is unit-tested without a
server; :class:`edgeops.serving.predictor.OnnxPredictor` applies it to both protocols.
"""

from __future__ import annotations

import json
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
    {
        "FP16",
        "FP32",
        "FP64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
    }
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


def _json(value: Any) -> str:
    """``value`` as the client wrote it (JSON: ``null``, ``true``, ``"0.1"``), at most 40
    characters, for a message."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(value: Any) -> bool:
    # JSON true/false arrive as bool, a subclass of int: not a sensor reading.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _first_non_number(rows: list[Any]) -> tuple[str, Any] | None:
    """``("[i][j]", value)`` of the first leaf of V1 ``rows`` that is not a number, or None."""
    stack: list[tuple[str, Any]] = [(f"[{i}]", row) for i, row in enumerate(rows)]
    stack.reverse()
    while stack:
        where, value = stack.pop()
        if isinstance(value, list):
            stack.extend(reversed([(f"{where}[{j}]", v) for j, v in enumerate(value)]))
        elif not _is_number(value):
            return where, value
    return None


def _integer_range(datatype: str) -> tuple[int, int] | None:
    """``(min, max)`` of an integer V2 datatype (``UINT8`` -> ``(0, 255)``), None otherwise."""
    if not datatype.startswith(("INT", "UINT")):
        return None
    limits = np.iinfo(np.dtype(datatype.lower()))
    return int(limits.min), int(limits.max)


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
        if isinstance(instances, list) and not instances:
            raise self.bad('"instances" is empty: send at least one [feature, ...] row', {})
        if not isinstance(instances, list):
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
        if batch.ndim == len(self.shape):
            # Say which value is not a number (null, "a", true), not numpy's dtype for it;
            # numpy would also read [true, 1] as the integers [1, 1].
            found = _first_non_number(instances)
            if found is not None:
                where, value = found
                raise self.bad(f"expected numbers, got {_json(value)} at {where}", received)
            if batch.dtype.kind == "O":
                # Only numbers, but an integer beyond int64 made numpy keep Python objects.
                batch = batch.astype(np.float64)
                received["datatype"] = "FP64"
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
            raise self.bad(
                f"datatype {tensor.datatype} is not numeric (the model takes "
                f"{', '.join(sorted(NUMERIC_DATATYPES))}, converted to {EXPECTED_DATATYPE})",
                received,
            )
        raw = tensor.data
        if any(dim < 0 for dim in tensor.shape):
            # V2 shapes are sizes: -1 is a model's free dimension, never a request's.
            raise self.bad(f"shape {list(tensor.shape)} has a negative dimension", received)
        if isinstance(raw, list):
            # numpy would truncate 0.5 to an INT32 0, parse "1" as a number or overflow on a
            # UINT8 300: the data must be of its declared datatype and within its range.
            values = np.asarray(raw, dtype=object).ravel() if raw else np.asarray([])
            limits = _integer_range(tensor.datatype)
            for value in values:
                if not _is_number(value) or (limits and not float(value).is_integer()):
                    raise self.bad(
                        f"data holds {_json(value)}, which is not of datatype {tensor.datatype}",
                        received,
                    )
                if limits and not limits[0] <= value <= limits[1]:
                    raise self.bad(
                        f"data holds {_json(value)}, outside datatype {tensor.datatype}'s "
                        f"range {limits[0]} to {limits[1]}",
                        received,
                    )
            size = int(np.prod(tensor.shape)) if tensor.shape else 0
            if len(values) != size:
                raise self.bad(
                    f"data does not match shape {list(tensor.shape)} ({size} values) and "
                    f"datatype {tensor.datatype}: got {len(values)} values",
                    received,
                )
        try:
            batch = np.asarray(tensor.as_numpy())
        except (ValueError, TypeError, OverflowError) as error:
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
