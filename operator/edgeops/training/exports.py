"""Exports of a trained Keras model for edge runtimes, each checked against Keras.

ONNX goes through a `tf.function` signature (tf2onnx), is validated with `onnx.checker`
and must match Keras outputs within tolerance under ONNX Runtime. The int8 model is
full-integer quantized with a representative dataset and its accuracy is *measured* with
the LiteRT interpreter, never assumed.

The int8 model is the Keras model *after* its ``standardize`` layer: a TFLite int8 input has
one scale for all features, so raw sensors on different scales (0..1 g next to ~101,000 Pa)
would share one grid and lose their signal. Its input is the standardised vector, and the
per-feature mean/scale ride in the flatbuffer (:mod:`edgeops.standardization`); every
runtime here applies them before quantising, so callers still pass raw values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeops import standardization as std
from edgeops.training import tflm

ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-4
Array = NDArray[Any]


class ExportMismatchError(RuntimeError):
    """An exported model disagrees with the Keras model beyond tolerance."""


@dataclass
class ExportResult:
    format: str
    files: dict[str, Path]
    size_bytes: int
    latency_ms: float
    probs: Array | None = None


def latency_ms(predict_one: Any, samples: Array, repeats: int = 50) -> float:
    """Median per-sample latency on this machine (batch of one, after a warm-up)."""
    predict_one(samples[:1])
    times = []
    for i in range(min(repeats, len(samples))):
        start = time.perf_counter()
        predict_one(samples[i : i + 1])
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def export_saved_model(model: Any, out: Path) -> ExportResult:
    target = out / "saved_model"
    model.export(str(target), verbose=False)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    files = {str(p.relative_to(out)): p for p in target.rglob("*") if p.is_file()}
    return ExportResult("savedmodel", files, size, 0.0)


def export_onnx(model: Any, out: Path, x: Array, keras_probs: Array) -> ExportResult:
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, *x.shape[1:]), tf.float32, name="input"),)
    fn = tf.function(lambda inp: model(inp, training=False))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=ONNX_OPSET)
    onnx.checker.check_model(proto)
    path = out / "model.onnx"
    path.write_bytes(proto.SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    probs = session.run(None, {name: x.astype(np.float32)})[0]
    diff = float(np.abs(probs - keras_probs).max())
    if diff > ONNX_TOLERANCE:
        raise ExportMismatchError(
            f"ONNX outputs differ from Keras by {diff:.2e} > {ONNX_TOLERANCE}"
        )
    latency = latency_ms(lambda s: session.run(None, {name: s.astype(np.float32)}), x)
    return ExportResult("onnx", {"model.onnx": path}, path.stat().st_size, latency, probs)


def _interpreter(content: bytes) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # older stacks: the interpreter still ships inside TensorFlow
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    interp = Interpreter(model_content=content)
    interp.allocate_tensors()
    return interp


def run_tflite(content: bytes, x: Array) -> Array:
    """Class probabilities ``[n, classes]`` from a .tflite model for raw inputs ``x``
    ``[n, *input_shape]``: standardised first when the model carries its standardisation,
    then de/quantizing int8 I/O as needed. Raises ``ValueError``/``RuntimeError`` from the
    interpreter."""
    standardization = std.read(content)
    if standardization is not None:
        x = standardization.apply(x)
    interp = _interpreter(content)
    inp = interp.get_input_details()[0]
    outp = interp.get_output_details()[0]
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = outp["quantization"]
    rows = []
    for i in range(len(x)):
        sample = x[i : i + 1].astype(np.float32)
        if inp["dtype"] == np.int8:
            sample = np.clip(np.round(sample / in_scale + in_zero), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], sample)
        interp.invoke()
        result = interp.get_tensor(outp["index"])
        if outp["dtype"] == np.int8:
            result = (result.astype(np.float32) - out_zero) * out_scale
        rows.append(result[0])
    return np.asarray(rows, dtype=np.float32)


def tflite_latency(content: bytes, x: Array) -> float:
    interp = _interpreter(content)
    inp = interp.get_input_details()[0]
    dtype = inp["dtype"]

    def one(sample: Array) -> None:
        interp.set_tensor(inp["index"], np.zeros(inp["shape"], dtype=dtype))
        interp.invoke()

    return latency_ms(one, x)


def export_tflite(model: Any, out: Path, x: Array) -> ExportResult:
    import tensorflow as tf

    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    path = out / "model.tflite"
    path.write_bytes(content)
    probs = run_tflite(content, x)
    return ExportResult(
        "tflite", {"model.tflite": path}, len(content), tflite_latency(content, x), probs
    )


def export_tflite_int8(
    model: Any,
    out: Path,
    x: Array,
    representative: Array,
    standardization: std.Standardization | None = None,
) -> ExportResult:
    """Full-integer int8 model (int8 input and output) written to ``model_int8.tflite``,
    its probabilities on ``x`` (raw values) measured with LiteRT.

    With ``standardization`` (the statistics the model's ``standardize`` layer was built
    from) the exported graph starts after that layer, is calibrated on standardised
    ``representative`` rows, and carries ``standardization`` as metadata."""
    import tensorflow as tf

    if standardization is not None:
        # The sub-graph after the float standardisation: its input tensor is what gets the
        # single int8 scale, and standardised features share one range.
        model = tf.keras.Model(model.get_layer("standardize").output, model.output)
        representative = standardization.apply(representative)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [representative[i : i + 1].astype(np.float32)] for i in range(len(representative))
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    content = converter.convert()
    if standardization is not None:
        content = std.embed(content, standardization)
    path = out / "model_int8.tflite"
    path.write_bytes(content)
    probs = run_tflite(content, x)
    return ExportResult(
        "tflite-int8", {"model_int8.tflite": path}, len(content), tflite_latency(content, x), probs
    )


def export_tflm(int8_model: bytes, out: Path) -> ExportResult:
    """The TFLite-Micro bundle (``tflm/model_data.{h,cc}``) of the int8 flatbuffer, with
    the input standardisation it carries as C arrays for the firmware."""
    bundle = out / "tflm"
    bundle.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, text in tflm.model_data_files(int8_model, std.read(int8_model)).items():
        (bundle / name).write_text(text)
        files[f"tflm/{name}"] = bundle / name
    # The bundle is what firmware links; its size on flash is the int8 flatbuffer's.
    return ExportResult("tflm", files, len(int8_model), 0.0)
