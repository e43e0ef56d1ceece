"""``python -m edgeops.training.evaluate --config-json JSON``: the operator's own evaluation
of a TrainingRun's exports, the only source of the metrics its gates use.

A trainer image is the tenant's code: the metrics it writes in ``results.json`` are claims,
not measurements. After the training Job succeeds the operator runs this module in a Job of
its own, in its own namespace, from EdgeOps's trainer image (whatever ``spec.trainer.image``
says). It

1. reads the artifact list from the trainer's ``results.json`` and downloads every exported
   model by its content address, re-hashing it (a listed size or SHA-256 that does not
   match the bytes fails the evaluation);
2. loads the dataset version's test split (and slice columns) itself, verifying its hashes
   (:func:`edgeops.training.data.load_version`);
3. runs each export with its real runtime (ONNX Runtime for ``onnx``, the LiteRT interpreter
   for ``tflite``/``tflite-int8`` and the flatbuffer a ``tflm`` bundle embeds) and computes
   the metrics with :mod:`edgeops.training.evaluation`;
4. writes the model card (:mod:`edgeops.training.card`) from what it measured, with the
   trainer's own claims only in a section labelled untrusted, as the ``model-card``
   artifact (a card the trainer listed is dropped);
5. writes the evaluation document content-addressed, then a readable copy at
   ``<run prefix>/evaluation.json``, and prints ``EDGEOPS_EVALUATION {"sha256": ...}`` as
   its last log line. The operator trusts that line (the pod runs in the operator's
   namespace, where tenants cannot write) and re-hashes the document it names, so bytes
   a tenant writes to the bucket are never taken for the evaluation.

A failure prints ``EDGEOPS_EVALUATION {"error": ...}`` and exits 2 when the exports
cannot be evaluated (the Job fails at once) or 1 for anything else (retried once).

One export failing is that export's verdict, not the run's: an export the trainer reports
as failed (``exportErrors`` in ``results.json``, e.g. a converter error) or one its runtime
cannot run on the test split (e.g. an XNNPACK error, outputs that are not probabilities)
is left out of the artifacts and metrics and named with its reason in
``metrics.exportErrors``, so the gates and targets that need it fail with that reason. Only
when no export can be evaluated does the evaluation fail.

The overall metrics (accuracy, macro_f1, ece, fairness_gap, per class, per slice) are those
of the first float export (onnx, tflite) or else the int8 one; ``<format>_accuracy``,
``<format>_size_bytes`` and ``<format>_latency_ms`` are per export. A SavedModel is never
executed here: its graph may contain file-system ops, and nothing deploys it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tarfile
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from edgeops import __version__, standardization
from edgeops.policy.training import EVALUATION_MARKER as MARKER
from edgeops.settings import settings
from edgeops.standardization import Standardization
from edgeops.store import ArtifactStore, StoreConfig
from edgeops.store.artifacts import blob_key
from edgeops.training.card import model_card, trainer_claims
from edgeops.training.data import load_version
from edgeops.training.evaluation import Evaluation, evaluate, per_slice_status, wilson_interval
from edgeops.training.opcount import OpCount
from edgeops.training.pipeline import EXPORT_FORMATS, TrainingData
from edgeops.training.run import artifact_entry

SCHEMA: Final = "edgeops.dev/evaluation/v1"
#: Largest export the evaluator downloads (bytes): edge models are far smaller.
MAX_ARTIFACT_BYTES: Final = 256 * 1024 * 1024
#: Longest reason kept for a failed export (the status field's bound).
MAX_EXPORT_ERROR: Final = 600
#: Export whose probabilities give the overall metrics, in order of preference.
REFERENCE_ORDER: Final = ("onnx", "tflite", "tflite-int8", "tflm")
#: Where the ``<fmt>_latency_ms`` metrics come from: this host, whatever the targets run.
LATENCY_SOURCE: Final = {
    "source": "host",
    "machine": platform.machine(),
    "processor": platform.processor()[:128] or platform.machine(),
}
EXIT_FAILED: Final = 1
#: The exports cannot be evaluated: retrying gives the same answer (the Job's
#: podFailurePolicy fails the Job at once on it).
EXIT_INVALID: Final = 2


class EvaluationError(ValueError):
    """The exports cannot be evaluated (missing, mis-hashed, not loadable, wrong shape)."""


@dataclass(frozen=True)
class Measured:
    """One export run on the test split."""

    probs: np.ndarray[Any, Any]
    size_bytes: int
    latency_ms: float | None
    ops: OpCount | None = None


def _key(fmt: str) -> str:
    return fmt.replace("-", "_")


def verified_artifacts(
    store: ArtifactStore, listed: Any, exports: list[str]
) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """The trainer's artifact list, each entry checked against its content address, and the
    bytes of every export format.

    Returns ``(artifacts, blobs)``: ``artifacts`` in the ``ArtifactRef`` shape with the URI
    rebuilt from the content address (``s3://<bucket>/blobs/sha256/..``), ``blobs`` maps an
    export format to its bytes. Raises :class:`EvaluationError` for a malformed list, an
    export of ``exports`` that is missing, a size or hash that does not match, or an
    artifact over :data:`MAX_ARTIFACT_BYTES`; ``IntegrityError``/``StoreError`` from S3.
    """
    if not isinstance(listed, list):
        raise EvaluationError("results.json: artifacts must be a list")
    artifacts: list[dict[str, Any]] = []
    blobs: dict[str, bytes] = {}
    for entry in listed:
        if not isinstance(entry, dict):
            raise EvaluationError("results.json: every artifact must be an object")
        fmt, sha256, size = entry.get("format"), entry.get("sha256"), entry.get("size")
        if not isinstance(fmt, str) or not isinstance(sha256, str) or not isinstance(size, int):
            raise EvaluationError("results.json: artifacts need format, sha256 and size")
        try:
            key = blob_key(sha256)
        except ValueError as exc:
            raise EvaluationError(f"artifact {fmt}: {exc}") from None
        if not 0 <= size <= MAX_ARTIFACT_BYTES:
            raise EvaluationError(f"artifact {fmt}: size {size} is outside 0..{MAX_ARTIFACT_BYTES}")
        if fmt in EXPORT_FORMATS:
            if fmt in blobs:
                raise EvaluationError(f"results.json lists {fmt} twice")
            data = store.get_blob(sha256)  # re-hashes: the bytes are the ones named
            if len(data) != size:
                raise EvaluationError(f"artifact {fmt}: {len(data)} bytes, listed as {size}")
            blobs[fmt] = data
        elif store.stat(key) is None:
            raise EvaluationError(f"artifact {fmt}: blob {sha256[:16]}... does not exist")
        name = entry.get("name")
        artifacts.append(
            {
                "uri": f"s3://{store.bucket}/{key}",
                "size": size,
                "sha256": sha256,
                "format": fmt,
                **({"name": str(name)[:256]} if name else {}),
            }
        )
    missing = [f for f in exports if f not in blobs]
    if missing:
        raise EvaluationError(f"the trainer exported no {', '.join(missing)} artifact")
    return artifacts, blobs


def _tflm_flatbuffer(bundle: bytes) -> bytes:
    """The int8 flatbuffer a TFLite-Micro bundle (tar with ``tflm/model_data.cc``) embeds."""
    from edgeops.training.tflm import parse_c_array

    try:
        with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
            member = tar.extractfile("tflm/model_data.cc")
            if member is None:
                raise KeyError("tflm/model_data.cc")
            return parse_c_array(member.read(1024 * 1024 * 64).decode())
    except (tarfile.TarError, KeyError, UnicodeDecodeError, ValueError) as exc:
        raise EvaluationError(f"tflm bundle: {type(exc).__name__}: {exc}") from None


def measure(fmt: str, blob: bytes, x: np.ndarray[Any, Any]) -> Measured:
    """Runs one export on ``x`` with its runtime. Raises :class:`EvaluationError` when the
    runtime refuses the bytes."""
    from edgeops.training import exports, opcount

    try:
        if fmt == "onnx":
            import onnxruntime as ort

            session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            probs = np.asarray(session.run(None, {name: x})[0])
            onnx_ms = exports.latency_ms(lambda s: session.run(None, {name: s}), x)
            return Measured(probs, len(blob), onnx_ms, opcount.count_onnx(blob))
        content = _tflm_flatbuffer(blob) if fmt == "tflm" else blob
        probs = exports.run_tflite(content, x)
        tflite_ms = None if fmt == "tflm" else exports.tflite_latency(content, x)
        return Measured(probs, len(content), tflite_ms, opcount.count_tflite(content))
    except EvaluationError:
        raise
    except Exception as exc:  # whatever the runtime raises for bytes that are no model
        raise EvaluationError(
            f"{fmt}: the runtime cannot run it: {type(exc).__name__}: {str(exc)[:1000]}"
        ) from None


def _check_probs(fmt: str, probs: np.ndarray[Any, Any], rows: int, classes: int) -> None:
    if probs.shape != (rows, classes):
        raise EvaluationError(
            f"{fmt}: outputs shape {list(probs.shape)}, expected [{rows}, {classes}] "
            "(one probability per class for each test row)"
        )
    if not np.isfinite(probs).all():
        raise EvaluationError(f"{fmt}: outputs are not finite")


def evaluate_exports(
    data: TrainingData, blobs: Mapping[str, bytes], errors: dict[str, str] | None = None
) -> tuple[str, Evaluation, dict[str, float]]:
    """Runs every export on the test split. Returns ``(reference format, its evaluation,
    flat metrics)``; the flat metrics hold the reference's accuracy, macro_f1, ece and
    fairness_gap and, per export, ``<fmt>_accuracy``, ``<fmt>_size_bytes``, the operation
    counts of one inference read from its graph (``<fmt>_macs``, ``<fmt>_elementwise_ops``,
    ``<fmt>_operators``) and (except tflm, which runs on a microcontroller)
    ``<fmt>_latency_ms``, timed on this host (see :data:`LATENCY_SOURCE`). The evaluation's
    ``intervals`` gain a Wilson interval per ``<fmt>_accuracy``. Raises
    :class:`EvaluationError`.

    With ``errors``, an export that cannot be run (while another can) is left out of the
    metrics and its reason stored in ``errors[format]``; without it, or when no export
    runs, the first such failure raises."""
    if not blobs:
        raise EvaluationError("no exported model to evaluate")
    if len(data.y_test) == 0:
        raise EvaluationError("the dataset version's test split is empty")
    x = data.x_test.astype(np.float32)
    measured: dict[str, Measured] = {}
    failures: dict[str, EvaluationError] = {}
    for fmt in sorted(blobs):
        try:
            result = measure(fmt, blobs[fmt], x)
            _check_probs(fmt, result.probs, len(data.y_test), len(data.classes))
        except EvaluationError as exc:
            if errors is None:
                raise
            failures[fmt] = exc
            continue
        measured[fmt] = result
    if not measured:
        raise next(iter(failures.values()))
    if errors is not None:
        errors.update({fmt: str(exc)[:MAX_EXPORT_ERROR] for fmt, exc in failures.items()})
    reference = next(f for f in REFERENCE_ORDER if f in measured)
    evaluation = evaluate(measured[reference].probs, data.y_test, data.classes, data.test_slices)
    flat: dict[str, float] = dict(evaluation.flat_metrics())
    for fmt, result in measured.items():
        correct = int((result.probs.argmax(axis=1) == data.y_test).sum())
        flat[f"{_key(fmt)}_accuracy"] = correct / len(data.y_test)
        evaluation.intervals[f"{_key(fmt)}_accuracy"] = wilson_interval(correct, len(data.y_test))
        flat[f"{_key(fmt)}_size_bytes"] = float(result.size_bytes)
        if result.latency_ms is not None:
            flat[f"{_key(fmt)}_latency_ms"] = round(result.latency_ms, 4)
        if result.ops is not None:
            flat[f"{_key(fmt)}_macs"] = float(result.ops.macs)
            flat[f"{_key(fmt)}_elementwise_ops"] = float(result.ops.elementwise)
            flat[f"{_key(fmt)}_operators"] = float(result.ops.operators)
    return reference, evaluation, flat


def reported_export_errors(results: Mapping[str, Any]) -> dict[str, str]:
    """The exports the trainer says failed (``exportErrors``: format → reason), limited to
    known formats, each reason prefixed so status says whose words they are. Raises
    :class:`EvaluationError` when the field is not a mapping of strings."""
    reported = results.get("exportErrors") or {}
    if not isinstance(reported, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in reported.items()
    ):
        raise EvaluationError("results.json: exportErrors must map formats to reasons")
    return {
        fmt: f"the trainer's export failed: {reason}"[:MAX_EXPORT_ERROR]
        for fmt, reason in reported.items()
        if fmt in EXPORT_FORMATS
    }


def _trainer_claims(results: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer's own overall metrics, kept for comparison only (never gated), limited
    to plain metric names (:func:`edgeops.training.card.trainer_claims`)."""
    overall = (results.get("metrics") or {}).get("overall") if isinstance(results, dict) else None
    if not isinstance(overall, dict):
        return {}
    return trainer_claims(overall)


def _standardization(blobs: Mapping[str, bytes]) -> Standardization | None:
    """The input standardisation the evaluated int8 export carries (for the card), if any."""
    for fmt in ("tflite-int8", "tflm"):
        if fmt in blobs:
            try:
                content = _tflm_flatbuffer(blobs[fmt]) if fmt == "tflm" else blobs[fmt]
                return standardization.read(content)
            except (EvaluationError, ValueError):
                return None
    return None


def _with_card(
    store: ArtifactStore,
    document: dict[str, Any],
    dataset: Mapping[str, str],
    results: Mapping[str, Any],
    data: TrainingData,
    blobs: Mapping[str, bytes],
) -> None:
    """Writes the model card of ``document`` (measured metrics only; the trainer's claims in
    a section labelled untrusted) content-addressed and lists it as the ``model-card``
    artifact, replacing any card the trainer listed: a trainer's card is its own claim."""
    family = results.get("family")
    card = model_card(
        document,
        dataset,
        {"train": len(data.y_train), "validation": len(data.y_val), "test": len(data.y_test)},
        family=family if isinstance(family, str) else None,
        standardization=_standardization(blobs),
    )
    ref = store.put_blob(card.encode())
    document["artifacts"].append(artifact_entry(store, ref, "model-card", "MODEL_CARD.md"))


#: Keys of the trainer's ``fieldData`` summary carried over, and their types.
_FIELD_DATA_KEYS: dict[str, type | tuple[type, ...]] = {
    "repeats": int,
    "referenceFrom": str,
    "referenceRows": int,
    "trainRows": int,
    "baselineMissing": bool,
}


def _trainer_field_data(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trainer's ``fieldData`` summary (a run for drift), reduced to its known keys
    with the right types (``fieldRows``: split -> count), or None: a lineage note for the
    run's status, never gated."""
    reported = results.get("fieldData")
    if not isinstance(reported, dict):
        return None
    kept: dict[str, Any] = {
        k: v
        for k, v in reported.items()
        if k in _FIELD_DATA_KEYS
        and isinstance(v, _FIELD_DATA_KEYS[k])
        and (k == "baselineMissing" or not isinstance(v, bool))
        and (not isinstance(v, int) or v >= 0)
    }
    if kept.get("referenceFrom") not in (None, "field", "all"):
        kept.pop("referenceFrom")
    rows = reported.get("fieldRows")
    if isinstance(rows, dict):
        kept["fieldRows"] = {
            str(k)[:32]: v
            for k, v in list(rows.items())[:8]
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0
        }
    return kept


def run(store: ArtifactStore, config: Mapping[str, Any]) -> dict[str, Any]:
    """The whole evaluation (see the module docstring); returns the document written.
    ``config``: ``{"run": {namespace, name, uid}, "dataset": {namespace, name, version},
    "exports": [...], "sliceColumns": [...], "results": key, "output": {"prefix": ...}}``."""
    results = store.get_json(str(config["results"]))
    if not isinstance(results, dict):
        raise EvaluationError("results.json is not a JSON object")
    errors = reported_export_errors(results)
    artifacts, blobs = verified_artifacts(
        store,
        results.get("artifacts"),
        [f for f in config.get("exports") or [] if f not in errors],
    )
    for fmt in errors:  # a listed artifact of a failed export is not evaluated or signed
        blobs.pop(fmt, None)
    if not blobs and errors:
        raise EvaluationError(
            "every export failed: " + "; ".join(f"{f}: {e}" for f, e in sorted(errors.items()))
        )
    dataset = config["dataset"]
    print(
        f"evaluating {', '.join(sorted(blobs))} on {dataset['namespace']}/{dataset['name']}"
        f"@{str(dataset['version'])[:12]} (test split)",
        flush=True,
    )
    data, _ = load_version(
        store,
        dataset["namespace"],
        dataset["name"],
        dataset["version"],
        list(config.get("sliceColumns") or []),
    )
    reference, evaluation, flat = evaluate_exports(data, blobs, errors)
    # A failed export is never signed; a card the trainer wrote is replaced by EdgeOps's.
    artifacts = [a for a in artifacts if a["format"] not in errors and a["format"] != "model-card"]
    document = {
        "schema": SCHEMA,
        "evaluator": {"version": __version__},
        "run": config["run"],
        "datasetVersion": dataset["version"],
        "reference": reference,
        "samples": {"test": len(data.y_test)},
        "classes": data.classes,
        "metrics": {
            "overall": flat,
            "perSlice": per_slice_status(evaluation),
            "exportErrors": dict(sorted(errors.items())),
            "intervals": evaluation.intervals,
        },
        # Every <fmt>_latency_ms is a timing on the evaluator's CPU, not on a device: the
        # gates never use it for an MCU target or hardware with a profile.
        "latency": LATENCY_SOURCE,
        "detail": evaluation.to_dict(),
        "artifacts": artifacts,
        "trainerReported": {"overall": _trainer_claims(results), "trusted": False},
    }
    field_data = _trainer_field_data(results)
    if field_data is not None:
        document["trainerReported"]["fieldData"] = field_data
    _with_card(store, document, dataset, results, data, blobs)
    shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(flat.items()) if k.endswith("accuracy"))
    print(f"evaluated with {reference} as reference: {shown}", flush=True)
    for fmt, reason in sorted(errors.items()):
        print(f"export {fmt} FAILED: {reason}", flush=True)
    return document


def publish(store: ArtifactStore, config: Mapping[str, Any], document: Any) -> str:
    """Writes the document content-addressed and as ``<prefix>/evaluation.json``; returns
    its SHA-256 (what the marker line names)."""
    data = json.dumps(document, sort_keys=True).encode()
    ref = store.put_blob(data)
    store.put_bytes(f"{config['output']['prefix']}/evaluation.json", data, "application/json")
    return ref.sha256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="EdgeOps evaluator")
    parser.add_argument("--config-json", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        config = json.loads(args.config_json)
        store = ArtifactStore(StoreConfig.from_settings(settings()))
        digest = publish(store, config, run(store, config))
    except Exception as exc:
        if not isinstance(exc, EvaluationError):
            traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"[:1500]
        print(MARKER + json.dumps({"error": error}), flush=True)
        return EXIT_INVALID if isinstance(exc, EvaluationError) else EXIT_FAILED
    print(MARKER + json.dumps({"sha256": digest}), flush=True)
    return 0


if __name__ == "__main__":
    from edgeops.training.run import exit_now

    exit_now(main())
