"""The EdgeOps KServe predictor: a real `kserve.ModelServer` process serving a signed ONNX
model over the V1 and V2 REST protocols, and refusing to start on any tampering."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edgeops.signing import (
    BundleArtifact,
    build_manifest,
    format_expiry,
    generate_key,
    sign_manifest,
)

pytestmark = pytest.mark.integration
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("kserve", reason="the serving extra is needed")

FEATURES, CLASSES = 6, 4


def _onnx_model() -> bytes:
    """A small softmax classifier: probabilities = softmax(x @ W + b)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weights = numpy_helper.from_array(rng.normal(size=(FEATURES, CLASSES)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.normal(size=(CLASSES,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, CLASSES])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def signed_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    directory = tmp_path_factory.mktemp("model")
    data = _onnx_model()
    (directory / "model.onnx").write_bytes(data)
    key = generate_key()
    manifest = build_manifest(
        namespace="ns",
        model="motion",
        model_uid="uid-motion",
        version=7,
        target={"name": "kserve", "type": "server", "format": "onnx", "hardware": None},
        artifacts=[
            BundleArtifact(
                "model.onnx",
                "onnx",
                "s3://b/model.onnx",
                len(data),
                hashlib.sha256(data).hexdigest(),
            )
        ],
        min_agent_version="0.1.0",
        created=format_expiry(datetime.now(UTC)),
        expires_at=format_expiry(datetime.now(UTC) + timedelta(days=1)),
    )
    (directory / "bundle.json").write_bytes(sign_manifest(manifest, key).to_bytes())
    return directory, {key.key_id: key.public_b64}


#: What the operator tells the predictor the bundle must be signed for.
BINDING = {
    "EDGEOPS_MODEL_NAMESPACE": "ns",
    "EDGEOPS_MODEL_NAME": "motion",
    "EDGEOPS_MODEL_UID": "uid-motion",
    "EDGEOPS_MODEL_VERSION": "7",
}


def _start(
    model_dir: Path, keys: dict[str, str], port: int, binding: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "EDGEOPS_SIGNING_PUBLIC_KEYS": json.dumps(keys),
        **BINDING,
        **(binding or {}),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeops.serving",
            "--model_name=motion",
            f"--model_dir={model_dir}",
            f"--http_port={port}",
            f"--grpc_port={_free_port()}",
            "--workers=1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def server(signed_dir: tuple[Path, dict[str, str]]) -> Iterator[str]:
    port = _free_port()
    process = _start(*signed_dir, port)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"{url}/v2/models/motion/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("the model server did not become ready in 60 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _reference(x: np.ndarray, model_dir: Path) -> np.ndarray:
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return np.asarray(session.run(None, {"x": x})[0])


def test_v1_predict(server: str, signed_dir: tuple[Path, dict[str, str]]) -> None:
    x = np.random.default_rng(1).normal(size=(3, FEATURES)).astype(np.float32)
    response = httpx.post(
        f"{server}/v1/models/motion:predict", json={"instances": x.tolist()}, timeout=10
    )
    assert response.status_code == 200, response.text
    predictions = np.asarray(response.json()["predictions"])
    assert predictions.shape == (3, CLASSES)
    np.testing.assert_allclose(predictions, _reference(x, signed_dir[0]), rtol=1e-5)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)


def test_v2_infer(server: str, signed_dir: tuple[Path, dict[str, str]]) -> None:
    x = np.random.default_rng(2).normal(size=(2, FEATURES)).astype(np.float32)
    body = {
        "inputs": [
            {"name": "x", "shape": [2, FEATURES], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    response = httpx.post(f"{server}/v2/models/motion/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["model_name"] == "motion" and result["model_version"] == "7"
    output = result["outputs"][0]
    assert output["name"] == "probabilities" and output["shape"] == [2, CLASSES]
    got = np.asarray(output["data"]).reshape(2, CLASSES)
    np.testing.assert_allclose(got, _reference(x, signed_dir[0]), rtol=1e-5)


def test_bad_input_is_a_client_error(server: str) -> None:
    response = httpx.post(
        f"{server}/v1/models/motion:predict", json={"instances": [1, 2]}, timeout=10
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("target", ["model.onnx", "bundle.json"])
def test_one_tampered_byte_stops_the_server(
    signed_dir: tuple[Path, dict[str, str]], tmp_path: Path, target: str
) -> None:
    source, keys = signed_dir
    for name in ("model.onnx", "bundle.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    data = bytearray((tmp_path / target).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / target).write_bytes(bytes(data))
    process = _start(tmp_path, keys, _free_port())
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "VerificationError" in output, output[-2000:]


@pytest.mark.parametrize(
    ("variable", "value", "refusal"),
    [
        ("EDGEOPS_MODEL_VERSION", "6", "manifest is for version 7"),
        ("EDGEOPS_MODEL_NAMESPACE", "other-team", "manifest is for namespace 'ns'"),
        ("EDGEOPS_MODEL_NAME", "fraud-scorer", "manifest is for model 'motion'"),
        ("EDGEOPS_MODEL_UID", "uid-of-a-recreated-model", "manifest is for model UID"),
    ],
)
def test_a_validly_signed_bundle_for_another_model_version_stops_the_server(
    signed_dir: tuple[Path, dict[str, str]], variable: str, value: str, refusal: str
) -> None:
    process = _start(*signed_dir, _free_port(), {variable: value})
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "VerificationError" in output and refusal in output, output[-2000:]


def test_an_expired_bundle_stops_the_server(tmp_path: Path) -> None:
    data = _onnx_model()
    (tmp_path / "model.onnx").write_bytes(data)
    key = generate_key()
    past = datetime.now(UTC) - timedelta(days=31)
    manifest = build_manifest(
        namespace="ns",
        model="motion",
        model_uid="uid-motion",
        version=7,
        target={"name": "kserve", "type": "server", "format": "onnx", "hardware": None},
        artifacts=[
            BundleArtifact(
                "model.onnx",
                "onnx",
                "s3://b/model.onnx",
                len(data),
                hashlib.sha256(data).hexdigest(),
            )
        ],
        min_agent_version="0.1.0",
        created=format_expiry(past),
        expires_at=format_expiry(past + timedelta(days=30)),
    )
    (tmp_path / "bundle.json").write_bytes(sign_manifest(manifest, key).to_bytes())
    process = _start(tmp_path, {key.key_id: key.public_b64}, _free_port())
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "VerificationError" in output and "expired at" in output, output[-2000:]


# --- issue 17 item 10: bounded requests, 400 that say what the model expects, opaque 500s ---


def test_a_body_over_the_limit_is_answered_413(server: str) -> None:
    limit = 4 * 1024 * 1024  # EDGEOPS_PREDICTOR_MAX_REQUEST_BYTES' default
    big = b'{"instances": [' + b"[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]," * (limit // 30) + b"[1]]}"
    assert len(big) > limit
    response = httpx.post(
        f"{server}/v1/models/motion:predict",
        content=big,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413, response.text[:200]
    assert "EDGEOPS_PREDICTOR_MAX_REQUEST_BYTES" in response.json()["error"]

    # Without a Content-Length (chunked), it is cut off at the limit just the same.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    response = httpx.post(
        f"{server}/v2/models/motion/infer",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413, response.text[:200]
    # The predictor is still there for a request of normal size.
    ok = httpx.post(
        f"{server}/v1/models/motion:predict", json={"instances": [[0.0] * FEATURES]}, timeout=10
    )
    assert ok.status_code == 200, ok.text


def _expects(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    document = dict(response.json())
    assert document["input"] == "x"
    assert document["expectedShape"] == [None, FEATURES]
    assert document["expectedDatatype"] == "FP32"
    return document


def test_v1_wrong_feature_count_names_what_the_model_expects(server: str) -> None:
    url = f"{server}/v1/models/motion:predict"
    document = _expects(httpx.post(url, json={"instances": [[0.1] * 5]}, timeout=10))
    assert "expected 6 features, got 5" in document["error"]
    document = _expects(httpx.post(url, json={"instances": [[0.1] * 6, [0.1] * 5]}, timeout=10))
    assert "same number of features" in document["error"]
    document = _expects(httpx.post(url, json={"instances": [["a"] * 6]}, timeout=10))
    assert "expected numbers" in document["error"]
    _expects(httpx.post(url, json={"rows": [[0.1] * 6]}, timeout=10))


def _v2(shape: list[int], datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}


def test_v2_wrong_shape_or_datatype_names_what_the_model_expects(server: str) -> None:
    url = f"{server}/v2/models/motion/infer"
    document = _expects(httpx.post(url, json=_v2([1, 5], "FP32", [0.1] * 5), timeout=10))
    assert "expected 6 features, got 5" in document["error"]
    assert document["received"]["shape"] == [1, 5]
    document = _expects(httpx.post(url, json=_v2([6], "FP32", [0.1] * 6), timeout=10))
    assert "expected 2 dimensions" in document["error"]
    document = _expects(httpx.post(url, json=_v2([1, 6], "BYTES", ["a"] * 6), timeout=10))
    assert "BYTES is not numeric" in document["error"]
    # Data that does not fill its declared shape is refused, whichever layer notices.
    response = httpx.post(url, json=_v2([2, 6], "FP32", [0.1] * 6), timeout=10)
    assert response.status_code == 400, response.text
    # An integer tensor of the right shape is converted, not refused.
    ok = httpx.post(url, json=_v2([1, 6], "INT32", [1] * 6), timeout=10)
    assert ok.status_code == 200, ok.text


# --- issue 16 item 10: the exact 400 bodies over HTTP, for both protocols ---

_EXPECTS = "input 'x' expects shape [None, 6] of FP32"


def _exactly(response: httpx.Response, error: str, received: dict[str, Any]) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": f"{error}; {_EXPECTS}",
        "input": "x",
        "expectedShape": [None, FEATURES],
        "expectedDatatype": "FP32",
        "received": received,
    }


def test_v1_400_bodies_name_the_input_shape_and_datatype(server: str) -> None:
    url = f"{server}/v1/models/motion:predict"
    cases = [
        ([[0.1] * 5], "expected 6 features, got 5", {"shape": [1, 5], "datatype": "FP64"}),
        (
            [["a"] * 6],
            'expected numbers, got "a" at [0][0]',
            {"shape": [1, 6], "datatype": "BYTES"},
        ),
        (
            [[True] * 6],
            "expected numbers, got true at [0][0]",
            {"shape": [1, 6], "datatype": "BOOL"},
        ),
        (
            [[None, 1, 1, 1, 1, 1]],
            "expected numbers, got null at [0][0]",
            {"shape": [1, 6], "datatype": "BYTES"},
        ),
        ([], '"instances" is empty: send at least one [feature, ...] row', {}),
        (
            [[[0.1] * 6]],
            "expected 2 dimensions, got shape [1, 1, 6]",
            {"shape": [1, 1, 6], "datatype": "FP64"},
        ),
    ]
    for instances, error, received in cases:
        response = httpx.post(url, json={"instances": instances}, timeout=10)
        _exactly(response, error, received)


def test_v2_400_bodies_name_the_input_shape_and_datatype(server: str) -> None:
    url = f"{server}/v2/models/motion/infer"
    cases = [
        (_v2([1, 5], "FP32", [0.1] * 5), "expected 6 features, got 5"),
        (
            _v2([1, 6], "BYTES", ["a"] * 6),
            "datatype BYTES is not numeric (the model takes FP16, FP32, FP64, INT16, INT32, "
            "INT64, INT8, UINT16, UINT32, UINT64, UINT8, converted to FP32)",
        ),
        (
            _v2([1, 6], "UINT8", [300] + [1] * 5),
            "data holds 300, outside datatype UINT8's range 0 to 255",
        ),
        (_v2([-1, 6], "FP32", [0.1] * 6), "shape [-1, 6] has a negative dimension"),
        (
            _v2([2, 6], "FP32", [0.1] * 6),
            "data does not match shape [2, 6] (12 values) and datatype FP32: got 6 values",
        ),
        (_v2([1, 6], "INT32", [0.5] * 6), "data holds 0.5, which is not of datatype INT32"),
        (
            {"inputs": [{"name": "y", "shape": [1, 6], "datatype": "FP32", "data": [0.1] * 6}]},
            "the model has no input 'y'",
        ),
    ]
    for body, error in cases:
        tensor = body["inputs"][0]
        received = {k: tensor[k] for k in ("name", "shape", "datatype")}
        _exactly(httpx.post(url, json=body, timeout=10), error, received)
