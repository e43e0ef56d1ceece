"""The trainer that runs inside a TrainingRun's Job (the `train` extra).

Loads a dataset version, trains a small Keras model, evaluates it overall and per slice,
exports SavedModel, ONNX, TFLite float32/int8 and a TFLite-Micro C array, and publishes
metrics, a model card and the reference profile to S3, results manifest last.
TensorFlow is imported lazily so the pure parts (evaluation, bundles) stay light.
"""
