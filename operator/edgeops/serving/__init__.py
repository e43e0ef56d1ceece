"""Cloud-side serving of a signed ONNX artifact with KServe (the ``serving`` extra).

``python -m edgeops.serving --model_name=NAME --model_dir=/mnt/models`` starts a KServe
model server (V1 and V2 REST protocols) for the model in ``model_dir``, after verifying its
signed bundle manifest. ``verify`` needs only the signing module; ``predictor`` needs
kserve and onnxruntime.
"""
