"""The trainer that runs inside a TrainingRun's Job (the `train` extra).

Loads a dataset version, trains a small Keras model, evaluates it overall and per slice,
exports SavedModel, ONNX, TFLite float32/int8 and a TFLite-Micro C array, and publishes
metrics and the reference profile to S3, results manifest last (the model card is written
by EdgeOps's evaluator, :mod:`edgeops.training.evaluate`, from what it measures).
TensorFlow is imported lazily so the pure parts (evaluation, bundles) stay light.
"""
