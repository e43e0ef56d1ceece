"""A small model zoo sized for edge targets: the family follows the shape of the data.

- tabular features (n, f)        → dense network
- windows of sensor data (n, t, c) → 1-D convolution
- tiny images (n, h, w[, c])     → small CNN
"""

from __future__ import annotations

from typing import Any

import numpy as np

FAMILIES = ("dense", "conv1d", "cnn")


def family_for(shape: tuple[int, ...], requested: str = "auto") -> str:
    """Picks the family for samples of `shape` (without the batch axis)."""
    if requested != "auto":
        if requested not in FAMILIES:
            raise ValueError(f"modelFamily {requested!r} is not one of {', '.join(FAMILIES)}")
        return requested
    if len(shape) == 1:
        return "dense"
    if len(shape) == 2:
        return "conv1d"
    return "cnn"


def build_model(
    family: str,
    input_shape: tuple[int, ...],
    n_classes: int,
    width: int = 32,
    mean: Any = None,
    variance: Any = None,
) -> Any:
    """An uncompiled Keras model ending in softmax over `n_classes`.

    With `mean`/`variance` (per feature, from the train split) the model standardises its
    own input, so every exported format takes raw sensor values, as devices send them.
    """
    import tensorflow as tf

    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=input_shape, name="input")
    x = inputs
    if mean is not None and variance is not None:
        # Rescaling bakes the statistics in as graph constants (Normalization keeps them as
        # variables, which tf2onnx turns into missing graph inputs).
        std = np.sqrt(np.asarray(variance, dtype=np.float32))
        x = layers.Rescaling(
            scale=(1.0 / std).tolist(),
            offset=(-np.asarray(mean, dtype=np.float32) / std).tolist(),
            name="standardize",
        )(x)
    if family == "dense":
        x = layers.Dense(width, activation="relu")(x)
        x = layers.Dense(width // 2, activation="relu")(x)
    elif family == "conv1d":
        x = layers.Conv1D(width // 2, 5, padding="same", activation="relu")(x)
        x = layers.MaxPooling1D(2)(x)
        x = layers.Conv1D(width, 3, padding="same", activation="relu")(x)
        x = layers.GlobalAveragePooling1D()(x)
    elif family == "cnn":
        x = x if len(input_shape) == 3 else layers.Reshape((*input_shape, 1))(x)
        x = layers.Conv2D(width // 4, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(width // 2, 3, padding="same", activation="relu")(x)
        x = layers.GlobalAveragePooling2D()(x)
    else:
        raise ValueError(f"unknown model family {family!r}")
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return tf.keras.Model(inputs, outputs, name=f"edgeops_{family}")
