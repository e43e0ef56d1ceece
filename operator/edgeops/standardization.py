"""Per-feature input standardisation of int8 models, carried inside the ``.tflite`` file.

A TFLite int8 input tensor has one scale and zero point for all its values (activations are
quantised per tensor, never per channel, in LiteRT and TFLite-Micro alike). Sensors on
different scales then share one int8 grid: a 0..1 g accelerometer next to a ~101,000 Pa
barometer gets a step of ~400 Pa, and both features are lost. So the trainer exports the
int8 model *after* its standardisation layer: its int8 input is the standardised vector
``(x - mean) / scale`` (every feature on a comparable range), and the per-feature
``mean``/``scale`` travel inside the same flatbuffer as a metadata entry named
:data:`METADATA_NAME` (JSON). One signed artifact stays self-contained: the runtimes
(:mod:`edgeops.device.models`, :func:`edgeops.training.exports.run_tflite`, the evaluator)
read the entry with the LiteRT flatbuffer schema and standardise before they quantise;
firmware gets the same numbers as C arrays in the TFLite-Micro bundle's ``model_data.h``.
Interpreters ignore metadata, so the model itself is an ordinary int8 model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

#: Name of the flatbuffer metadata entry holding the JSON document.
METADATA_NAME: Final = "edgeops.input_standardization"
#: Bound on the JSON read back (a model with 100,000 features stays well below it).
MAX_DOCUMENT_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class Standardization:
    """``(x - mean) / scale`` over the last axis of the model's input (one entry per
    feature, in the model's feature order; ``features`` names them when known)."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.mean or len(self.mean) != len(self.scale):
            raise ValueError(
                f"input standardisation needs one mean and one scale per feature, got "
                f"{len(self.mean)} means and {len(self.scale)} scales"
            )
        if self.features and len(self.features) != len(self.mean):
            raise ValueError(
                f"input standardisation names {len(self.features)} features for "
                f"{len(self.mean)} means"
            )
        if not all(math.isfinite(m) for m in self.mean) or not all(
            math.isfinite(s) and s > 0 for s in self.scale
        ):
            raise ValueError("input standardisation: means must be finite, scales finite and > 0")

    def apply(self, x: NDArray[Any]) -> NDArray[np.float32]:
        """``x`` (``[..., features]``, raw sensor values) standardised, as float32. Computed
        in float64: ``101325.4 - 101325.0`` must not lose the signal to rounding."""
        values = np.asarray(x, dtype=np.float64)
        if values.shape[-1:] != (len(self.mean),):
            raise ValueError(
                f"input has {values.shape[-1] if values.ndim else 0} features on its last "
                f"axis, the model's standardisation has {len(self.mean)}"
            )
        standardized: NDArray[np.float32] = (
            (values - np.asarray(self.mean)) / np.asarray(self.scale)
        ).astype(np.float32)
        return standardized

    def to_json(self) -> bytes:
        """The metadata document: ``{"axis": -1, "mean": [...], "scale": [...],
        "features": [...]}``."""
        document = {
            "axis": -1,
            "mean": list(self.mean),
            "scale": list(self.scale),
            "features": list(self.features),
        }
        return json.dumps(document, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Standardization:
        """Inverse of :meth:`to_json`. Raises ``ValueError`` for a malformed document."""
        if len(data) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"input standardisation metadata is over {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(data)
            if document.get("axis", -1) != -1:
                raise ValueError(f"axis {document['axis']} is not supported (only -1)")
            return cls(
                tuple(float(v) for v in document["mean"]),
                tuple(float(v) for v in document["scale"]),
                tuple(str(v) for v in document.get("features") or ()),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"input standardisation metadata is malformed: {exc}") from None


def embed(model: bytes, standardization: Standardization) -> bytes:
    """``model`` (a ``.tflite`` flatbuffer) with ``standardization`` as its
    :data:`METADATA_NAME` metadata entry (replacing one already there)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(standardization.to_json(), dtype=np.uint8)
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(tree.buffers) - 1
    kept = [m for m in tree.metadata or [] if _name(m.name) != METADATA_NAME]
    tree.metadata = [*kept, entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def read(model: bytes) -> Standardization | None:
    """The standardisation a ``.tflite`` flatbuffer carries, or None (a model that takes raw
    values). Raises ``ValueError`` for a malformed entry."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    for i in range(root.MetadataLength()):
        entry = root.Metadata(i)
        if _name(entry.Name()) != METADATA_NAME:
            continue
        if not 0 <= entry.Buffer() < root.BuffersLength():
            raise ValueError(f"{METADATA_NAME} names buffer {entry.Buffer()}, which is missing")
        return Standardization.from_json(root.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return None


def _name(raw: bytes | str | None) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw or "")
