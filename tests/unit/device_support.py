"""Real tiny models, real signed manifests and an in-process gateway for the device agent's
unit tests.

Models are built with the ``onnx`` helper API (and TensorFlow's converter for TFLite);
manifests are signed with :mod:`edgeops.signing` exactly as ``controllers.bundles.publish``
signs them. :class:`FakeGateway` answers the device endpoints of :mod:`edgeops.api.wire`
over ``httpx.MockTransport`` (artifacts: 307 to a presigned-looking URL on another host) and
checks every request's RFC 9421 signature with :mod:`edgeops.httpsig`, so the client is
exercised on the wire, without the cluster."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeops import httpsig
from edgeops.api.wire import DesiredSampling, DesiredState, DesiredTarget, ProfileFeature
from edgeops.signing import (
    BundleArtifact,
    SigningKey,
    build_manifest,
    format_expiry,
    generate_key,
    load_public_key,
    sign_manifest,
)

NAMESPACE = "fleet"
DEVICE = "dev-1"
MODEL = "motion"
MODEL_UID = "uid-motion"
FEATURES = 4
CLASSES = 3
NOW = datetime.now(UTC)
FILE_NAMES = {
    "onnx": "model.onnx",
    "tflite": "model.tflite",
    "tflite-int8": "model_int8.tflite",
    "tflm": "model_tflm.tar",
}


def onnx_classifier(seed: int = 0, *, poison: bool = False, classes: int = CLASSES) -> bytes:
    """A linear softmax classifier ``[N, FEATURES] → [N, classes]``; ``poison`` multiplies
    the logits by NaN, so it loads and runs but its outputs are not finite."""
    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(
        rng.standard_normal((FEATURES, classes)).astype(np.float32), "W"
    )
    bias = numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["logits"]),
    ]
    inits = [weights, bias]
    if poison:
        inits.append(numpy_helper.from_array(np.array([np.nan], dtype=np.float32), "nan"))
        nodes.append(helper.make_node("Mul", ["logits", "nan"], ["scaled"]))
        nodes.append(helper.make_node("Softmax", ["scaled"], ["probs"], axis=1))
    else:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, FEATURES])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def tflm_bundle(int8_model: bytes) -> bytes:
    """The TFLite-Micro bundle the trainer exports: a deterministic tar of
    ``tflm/model_data.cc`` and ``tflm/model_data.h``."""
    from edgeops.training.tflm import model_data_files

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, text in sorted(model_data_files(int8_model).items()):
            data = text.encode()
            info = tarfile.TarInfo(f"tflm/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sign_bundle(
    artifact: bytes,
    *,
    fmt: str = "onnx",
    target_type: str = "linux",
    version: int = 1,
    key: SigningKey,
    model: str = MODEL,
    namespace: str = NAMESPACE,
    expires: datetime | None = None,
    model_uid: str = MODEL_UID,
) -> bytes:
    """The stored bytes of a signed v3 bundle manifest listing ``artifact``."""
    sha = hashlib.sha256(artifact).hexdigest()
    manifest = build_manifest(
        namespace=namespace,
        model=model,
        model_uid=model_uid,
        version=version,
        target={"name": "pi", "type": target_type, "format": fmt, "hardware": None},
        artifacts=[BundleArtifact(FILE_NAMES[fmt], fmt, f"s3://b/blobs/{sha}", len(artifact), sha)],
        min_agent_version="0.1.0",
        created=format_expiry(NOW - timedelta(minutes=1)),
        expires_at=format_expiry(expires or NOW + timedelta(days=30)),
    )
    return sign_manifest(manifest, key).to_bytes()


def desired_state(
    manifest: bytes,
    *,
    version: int = 1,
    fmt: str = "onnx",
    target_type: str = "linux",
    model: str = MODEL,
    profile: dict[str, ProfileFeature] | None = None,
    sampling: DesiredSampling | None = None,
    interval: int = 60,
    model_uid: str = MODEL_UID,
) -> DesiredState:
    return DesiredState(
        model=model,
        model_uid=model_uid,
        version=version,
        cohort="stable",
        target=DesiredTarget(name="pi", type=target_type, format=fmt),  # type: ignore[arg-type]
        bundle_manifest=manifest.decode(),
        report_interval_seconds=interval,
        profile=profile,
        sampling=sampling,
    )


@dataclass
class FakeGateway:
    """The gateway's device endpoints in process. ``blobs`` maps sha256 → bytes served at
    the presigned URL (tests swap in tampered bytes); ``down`` makes every request a
    connection error; requests signed wrongly are answered 401."""

    trusted: SigningKey = field(default_factory=generate_key)
    blobs: dict[str, bytes] = field(default_factory=dict)
    desired: DesiredState | None = None
    down: bool = False
    device_key: str | None = None
    statuses: list[dict[str, Any]] = field(default_factory=list)
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    on_request: Callable[[httpx.Request], None] | None = None
    refuse: tuple[int, str] | None = None  # (status, reason) for every signed request

    @property
    def keys(self) -> dict[str, str]:
        return {self.trusted.key_id: self.trusted.public_b64}

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def publish(self, artifact: bytes, **kw: Any) -> DesiredState:
        """Serves ``artifact`` and makes a desired state with a manifest signed by the
        trusted key."""
        self.blobs[hashlib.sha256(artifact).hexdigest()] = artifact
        manifest = sign_bundle(artifact, key=self.trusted, **_sign_args(kw))
        self.desired = desired_state(manifest, **kw)
        return self.desired

    def _json(self, status: int, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(status, json=body)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("gateway down", request=request)
        if self.on_request is not None:
            self.on_request(request)
        if request.url.host == "s3.local":
            blob = self.blobs.get(request.url.path.rsplit("/", 1)[-1])
            return httpx.Response(200, content=blob) if blob else httpx.Response(404)
        body = request.content
        path = request.url.path
        if path == "/v1/enroll":
            document = json.loads(body)
            self.device_key = document["publicKey"]
        try:
            parsed = httpsig.parse(request.headers["signature-input"], request.headers["signature"])
            httpsig.check_profile(parsed)
            assert self.device_key is not None
            httpsig.verify(
                parsed, [load_public_key(self.device_key)], request.method, path, request.headers
            )
            assert httpsig.digest_matches(request.headers["content-digest"], body)
            assert parsed.params["keyid"] == f"{NAMESPACE}/{DEVICE}"
        except (KeyError, AssertionError, httpsig.SignatureError) as exc:
            return self._json(401, {"reason": "BadSignature", "message": repr(exc)})
        prefix = f"/v1/devices/{NAMESPACE}/{DEVICE}"
        if self.refuse is not None:
            return self._json(self.refuse[0], {"reason": self.refuse[1], "message": "no"})
        if path == "/v1/enroll":
            return self._json(201, {"enrollment": "Approved"})
        if path == f"{prefix}/desired":
            if self.desired is None:
                return self._json(404, {"reason": "NothingAssigned", "message": "none"})
            data = self.desired.model_dump_json(by_alias=True, exclude_none=True).encode()
            etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
            if request.headers.get("if-none-match") == etag:
                return httpx.Response(304, headers={"ETag": etag})
            return httpx.Response(200, content=data, headers={"ETag": etag})
        if path.startswith(f"{prefix}/artifacts/"):
            sha = path.rsplit("/", 1)[-1]
            location = f"http://s3.local/bucket/blobs/{sha}?X-Amz-Signature=x"
            return httpx.Response(307, headers={"Location": location})
        kind = path.rsplit("/", 1)[-1]
        if kind in ("status", "telemetry", "samples"):
            document = json.loads(body)
            if self.sequences and document["sequence"] <= max(self.sequences):
                return self._json(409, {"reason": "StaleSequence", "message": "stale"})
            self.sequences.append(document["sequence"])
            {"status": self.statuses, "telemetry": self.telemetry, "samples": self.samples}[
                kind
            ].append(document)
            return self._json(200, {"sequence": document["sequence"]})
        return self._json(404, {"reason": "NotFound", "message": path})


def _sign_args(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: kw[k] for k in ("fmt", "target_type", "version", "model", "model_uid") if k in kw}


def tflite_classifiers(seed: int = 0) -> tuple[bytes, bytes]:
    """A float and a full-integer (int8 in and out) TFLite classifier ``[1, FEATURES] →
    [1, CLASSES]``, converted from a small Keras model as the trainer converts (slow: loads
    TensorFlow)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((FEATURES,)),
            tf.keras.layers.Dense(8, activation="relu"),
            tf.keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )
    plain = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    representative = np.random.default_rng(seed).standard_normal((64, FEATURES))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [representative[i : i + 1].astype(np.float32)] for i in range(len(representative))
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(plain), bytes(converter.convert())
