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
TAKES = (
    "(the model takes FP16, FP32, FP64, INT16, INT32, INT64, INT8, UINT16, UINT32, UINT64, "
    "UINT8, converted to FP32)"
)


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
            'expected numbers, got "a" at [0][0]',
            {"shape": [1, 6], "datatype": "BYTES"},
        ),
        (
            {"instances": [[None] * 6]},
            "expected numbers, got null at [0][0]",
            {"shape": [1, 6], "datatype": "BYTES"},
        ),
        (
            {"instances": [[True] * 6]},
            "expected numbers, got true at [0][0]",
            {"shape": [1, 6], "datatype": "BOOL"},
        ),
        (
            # numpy alone would read [true, 1] as the integers [1, 1].
            {"instances": [[0.1] * 6, [1, 2, 3, 4, 5, True]]},
            "expected numbers, got true at [1][5]",
            {"shape": [2, 6], "datatype": "FP64"},
        ),
        (
            {"instances": [[None, 1, 1, 1, 1, 1]]},
            "expected numbers, got null at [0][0]",
            {"shape": [1, 6], "datatype": "BYTES"},
        ),
        (
            {"instances": [[0.1] * 6, [0.1] * 5]},
            "instances must all have the same number of features",
            {"featureCounts": [5, 6]},
        ),
        ({"instances": []}, '"instances" is empty: send at least one [feature, ...] row', {}),
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
        (_v2([1, 6], "BYTES", ["a"] * 6), f"datatype BYTES is not numeric {TAKES}"),
        (_v2([1, 6], "BOOL", [True] * 6), f"datatype BOOL is not numeric {TAKES}"),
        (
            _v2([2, 6], "FP32", [0.1] * 6),
            "data does not match shape [2, 6] (12 values) and datatype FP32: got 6 values",
        ),
        (
            _v2([1, 6], "FP32", [0.1] * 7),
            "data does not match shape [1, 6] (6 values) and datatype FP32: got 7 values",
        ),
        (_v2([1, 6], "FP32", ["0.1"] * 6), 'data holds "0.1", which is not of datatype FP32'),
        (_v2([1, 6], "FP32", [True] * 6), "data holds true, which is not of datatype FP32"),
        (_v2([1, 6], "FP32", [None] * 6), "data holds null, which is not of datatype FP32"),
        (
            _v2([1, 6], "UINT8", [300] + [1] * 5),
            "data holds 300, outside datatype UINT8's range 0 to 255",
        ),
        (
            _v2([1, 6], "INT8", [-129] + [1] * 5),
            "data holds -129, outside datatype INT8's range -128 to 127",
        ),
        (
            _v2([1, 6], "INT64", [99999999999999999999] + [1] * 5),
            "data holds 99999999999999999999, outside datatype INT64's range "
            "-9223372036854775808 to 9223372036854775807",
        ),
        (
            _v2([1, 6], "INT64", [1e20] + [1] * 5),
            "data holds 1e+20, outside datatype INT64's range "
            "-9223372036854775808 to 9223372036854775807",
        ),
        (
            _v2([1, 6], "UINT64", [-1] + [1] * 5),
            "data holds -1, outside datatype UINT64's range 0 to 18446744073709551615",
        ),
        (_v2([-1, 6], "FP32", [0.1] * 6), "shape [-1, 6] has a negative dimension"),
        (
            _v2([0, 6], "FP32", [0.1] * 6),
            "data does not match shape [0, 6] (0 values) and datatype FP32: got 6 values",
        ),
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
    # UINT64 is taken like the other integer datatypes, up to its maximum.
    wide = MODEL.v2_batch([_v2([1, 6], "UINT64", [2**64 - 1] + [1] * 5)])
    assert wide.dtype == np.float32 and wide[0, 0] == np.float32(2.0**64)
    # An integer beyond int64 in V1 JSON is a number like any other.
    big = MODEL.v1_batch({"instances": [[10**20] + [1] * 5]})
    assert big.dtype == np.float32 and big[0, 0] == np.float32(1e20)
    nested = MODEL.v2_batch([_v2([1, 6], "FP64", [[0.25] * 6])])
    np.testing.assert_array_equal(nested, np.full((1, 6), 0.25, dtype=np.float32))
