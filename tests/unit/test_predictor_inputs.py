"""Issue 16 item 10 without a server: every rule by which the predictor refuses a request
that does not fit the model's input, with the exact 400 document it answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("kserve", reason="the serving extra is needed")

from kserve.protocol.infer_type import InferInput

from edgeops.serving.inputs import BadInputError, ModelInput

MODEL = ModelInput("x", (None, 6))
EXPECTS = "input 'x' expects shape [None, 6] of FP32"


def _refused(call: Any, *args: Any) -> dict[str, Any]:
    with pytest.raises(BadInputError) as caught:
        call(*args)
    return caught.value.document()


def _doc(error: str, received: dict[str, Any]) -> dict[str, Any]:
    return {
        "error": f"{error}; {EXPECTS}",
        "input": "x",
        "expectedShape": [None, 6],
        "expectedDatatype": "FP32",
        "received": received,
    }


@pytest.mark.parametrize(
    ("body", "error", "received"),
    [
        (
            {"instances": [[0.1] * 5]},
            "expected 6 features, got 5",
            {"shape": [1, 5], "datatype": "FP64"},
        ),
        (
            {"instances": [[1] * 7, [2] * 7]},
            "expected 6 features, got 7",
            {"shape": [2, 7], "datatype": "INT64"},
        ),
        (
            {"instances": [1, 2]},
            "expected 2 dimensions, got shape [2]",
            {"shape": [2], "datatype": "INT64"},
        ),
        (
            {"instances": [[[0.1] * 6]]},
            "expected 2 dimensions, got shape [1, 1, 6]",
            {"shape": [1, 1, 6], "datatype": "FP64"},
        ),
        (
            {"instances": [["a"] * 6]},
            "expected numbers, got BYTES",
            {"shape": [1, 6], "datatype": "BYTES"},
        ),
        (
            {"instances": [[None] * 6]},
            "expected numbers, got BYTES",
            {"shape": [1, 6], "datatype": "BYTES"},
        ),
        (
            {"instances": [[True] * 6]},
            "expected numbers, got BOOL",
            {"shape": [1, 6], "datatype": "BOOL"},
        ),
        (
            {"instances": [[0.1] * 6, [0.1] * 5]},
            "instances must all have the same number of features",
            {"featureCounts": [5, 6]},
        ),
        ({"instances": []}, 'expected {"instances": [[feature, ...], ...]}', {}),
        ({"rows": [[0.1] * 6]}, 'expected {"instances": [[feature, ...], ...]}', {}),
    ],
)
def test_v1_requests_that_do_not_fit_are_refused_naming_the_input(
    body: dict[str, Any], error: str, received: dict[str, Any]
) -> None:
    assert _refused(MODEL.v1_batch, body) == _doc(error, received)


def test_v1_nan_is_refused_and_a_fitting_batch_becomes_float32() -> None:
    document = _refused(MODEL.check, np.array([[np.nan] * 6]), {"shape": [1, 6]})
    assert document["error"] == f"expected finite numbers (no NaN, no infinity); {EXPECTS}"
    batch = MODEL.v1_batch({"instances": [[1] * 6, [0.5] * 6]})
    assert batch.dtype == np.float32 and batch.shape == (2, 6)


def _v2(shape: list[int], datatype: str, data: list[Any], name: str = "x") -> InferInput:
    return InferInput(name, shape, datatype, data)


@pytest.mark.parametrize(
    ("tensor", "error"),
    [
        (_v2([1, 5], "FP32", [0.1] * 5), "expected 6 features, got 5"),
        (_v2([6], "FP32", [0.1] * 6), "expected 2 dimensions, got shape [6]"),
        (_v2([1, 6], "BYTES", ["a"] * 6), "datatype BYTES is not numeric"),
        (_v2([1, 6], "BOOL", [True] * 6), "datatype BOOL is not numeric"),
        (
            _v2([2, 6], "FP32", [0.1] * 6),
            "data does not match shape [2, 6] (12 values) and datatype FP32: got 6 values",
        ),
        (
            _v2([1, 6], "FP32", [0.1] * 7),
            "data does not match shape [1, 6] (6 values) and datatype FP32: got 7 values",
        ),
        (_v2([1, 6], "FP32", ["0.1"] * 6), "data holds '0.1', which is not of datatype FP32"),
        (_v2([1, 6], "FP32", [True] * 6), "data holds True, which is not of datatype FP32"),
        (_v2([1, 6], "INT32", [0.5] * 6), "data holds 0.5, which is not of datatype INT32"),
        (_v2([1, 6], "FP32", [0.1] * 6, name="y"), "the model has no input 'y'"),
    ],
)
def test_v2_tensors_that_do_not_fit_are_refused_naming_the_input(
    tensor: InferInput, error: str
) -> None:
    received = {"name": tensor.name, "shape": tensor.shape, "datatype": tensor.datatype}
    assert _refused(MODEL.v2_batch, [tensor]) == _doc(error, received)


def test_v2_needs_exactly_one_tensor_and_converts_numbers() -> None:
    two = [_v2([1, 6], "FP32", [0.1] * 6), _v2([1, 6], "FP32", [0.1] * 6, name="z")]
    assert _refused(MODEL.v2_batch, two) == _doc(
        "expected exactly one input tensor, got 2", {"inputs": ["x", "z"]}
    )
    batch = MODEL.v2_batch([_v2([2, 6], "INT32", [1] * 12)])
    assert batch.dtype == np.float32 and batch.shape == (2, 6)
    nested = MODEL.v2_batch([_v2([1, 6], "FP64", [[0.25] * 6])])
    np.testing.assert_array_equal(nested, np.full((1, 6), 0.25, dtype=np.float32))
