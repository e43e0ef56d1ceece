"""Loading an installed artifact into a runtime: ONNX Runtime for ``onnx``, LiteRT for
``tflite`` / ``tflite-int8``, and for ``tflm`` the int8 flatbuffer a TFLite-Micro bundle
embeds as a C array, run with the LiteRT interpreter (what firmware would link, shown to be
a working model).

A :class:`Model` maps a float32 batch ``[n, *input_shape]`` to class scores ``[n, classes]``
(float32; int8 models are (de)quantised with their tensors' scale and zero point). The
batch holds raw sensor values: an int8 model that carries a per-feature input
standardisation (:mod:`edgeops.standardization`) gets ``(x - mean) / scale`` before its
input is quantised, so a 0..1 feature next to a ~101,000 one keeps both.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import PurePosixPath
from typing import Any, Final, Protocol

import numpy as np
from numpy.typing import NDArray

from edgeops import standardization as std

#: Formats each target type runs (what the agent refuses otherwise: TargetMismatch).
FORMATS_BY_TARGET: Final[dict[str, frozenset[str]]] = {
    "linux": frozenset({"onnx", "tflite", "tflite-int8"}),
    "mcu": frozenset({"tflm"}),
}
#: Bound on the C source read from a TFLite-Micro bundle (a 64 MiB model is 6x in hex).
MAX_TFLM_SOURCE_BYTES: Final = 400 * 1024 * 1024
Array = NDArray[np.float32]


class ModelLoadError(Exception):
    """The runtime refuses the bytes, or a TFLite-Micro bundle is malformed."""


class Model(Protocol):
    """A loaded model."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input row (without the batch dimension; dynamic dims as 1)."""

    def predict(self, batch: Array) -> Array:
        """Class scores ``[n, classes]`` for ``batch`` ``[n, *input_shape]``."""


class OnnxModel:
    """An ONNX model in an ONNX Runtime CPU session."""

    def __init__(self, data: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One device agent, one core: no thread pools fighting the application.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"ONNX Runtime cannot load the model: {exc}") from None
        first = self._session.get_inputs()[0]
        self._input = str(first.name)
        self._shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in first.shape[1:])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    def predict(self, batch: Array) -> Array:
        out = self._session.run(None, {self._input: batch.astype(np.float32)})[0]
        return np.asarray(out, dtype=np.float32)


class LiteRtModel:
    """A TFLite flatbuffer in the LiteRT interpreter, one row per invocation (edge
    interpreters are built for batch 1)."""

    def __init__(self, data: bytes) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._standardization = std.read(data)
            self._interp: Any = Interpreter(model_content=data, num_threads=1)
            self._interp.allocate_tensors()
        except Exception as exc:  # the interpreter raises ValueError/RuntimeError
            raise ModelLoadError(f"LiteRT cannot load the model: {exc}") from None
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        self._shape = tuple(int(d) for d in self._in["shape"][1:])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    def predict(self, batch: Array) -> Array:
        in_scale, in_zero = self._in["quantization"]
        out_scale, out_zero = self._out["quantization"]
        if self._standardization is not None:
            batch = self._standardization.apply(batch)
        rows = []
        for row in batch:
            sample = row[None].astype(np.float32)
            if self._in["dtype"] == np.int8:
                sample = np.clip(np.round(sample / in_scale + in_zero), -128, 127).astype(np.int8)
            self._interp.set_tensor(self._in["index"], sample)
            self._interp.invoke()
            result = self._interp.get_tensor(self._out["index"])
            if self._out["dtype"] == np.int8:
                result = (result.astype(np.float32) - out_zero) * out_scale
            rows.append(np.asarray(result, dtype=np.float32).reshape(-1))
        return np.asarray(rows, dtype=np.float32)


_C_ARRAY = re.compile(r"\[\]\s*=\s*\{(?P<body>[^}]*)\}", re.S)
_C_LEN = re.compile(r"_len\s*=\s*(?P<len>\d+)\s*;")
_HEX_BYTE = re.compile(r"0x([0-9a-fA-F]{2})")


def parse_model_data(source: str) -> bytes:
    """The bytes of the ``unsigned char ...[] = {0x.., ...}`` array in a TFLite-Micro
    ``model_data.cc``, checked against its ``..._len`` constant. Raises
    :class:`ModelLoadError`."""
    array = _C_ARRAY.search(source)
    length = _C_LEN.search(source)
    if array is None or length is None:
        raise ModelLoadError("model_data.cc has no byte array with a _len constant")
    data = bytes(int(h, 16) for h in _HEX_BYTE.findall(array.group("body")))
    if len(data) != int(length.group("len")):
        raise ModelLoadError(
            f"model_data.cc: array holds {len(data)} bytes, its _len says {length.group('len')}"
        )
    return data


def tflm_flatbuffer(bundle: bytes) -> bytes:
    """The int8 flatbuffer a TFLite-Micro bundle (a tar with ``model_data.cc`` and
    ``model_data.h``, as the trainer exports it) embeds. Raises :class:`ModelLoadError`."""
    try:
        with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
            names = {PurePosixPath(m.name).name: m for m in tar.getmembers() if m.isfile()}
            if "model_data.cc" not in names or "model_data.h" not in names:
                raise ModelLoadError("the bundle lacks model_data.cc or model_data.h")
            member = tar.extractfile(names["model_data.cc"])
            if member is None or names["model_data.cc"].size > MAX_TFLM_SOURCE_BYTES:
                raise ModelLoadError("model_data.cc is not a readable file of sane size")
            source = member.read().decode("ascii")
    except (tarfile.TarError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"the TFLite-Micro bundle is unreadable: {exc}") from None
    return parse_model_data(source)


def load_model(data: bytes, fmt: str) -> Model:
    """The model in ``data`` (an installed artifact of format ``fmt``). Raises
    :class:`ModelLoadError` for bytes the runtime refuses or an unknown format."""
    if fmt == "onnx":
        return OnnxModel(data)
    if fmt in ("tflite", "tflite-int8"):
        return LiteRtModel(data)
    if fmt == "tflm":
        return LiteRtModel(tflm_flatbuffer(data))
    raise ModelLoadError(f"no runtime for format {fmt!r}")
