"""What the validating admission webhook refuses and warns about: the checks the CRDs'
OpenAPI schemas and CEL rules cannot express (they run first, in the API server).

Refused (HTTP 422 from the webhook, the field named in every message):

- a Device key that is not an Ed25519 public key (base64 of exactly 32 bytes, or PEM), a
  ``fingerprint`` that is not the SHA-256 of the key, a ``nextPublicKey`` equal to the key;
- a duration shorter than 1 s or longer than 10 years (``0s`` made a busy loop, and
  ``99999999h`` passes the pattern, then overflows date arithmetic in the controllers):
  checked by the models (:func:`edgeops.api.common.duration_problem`) and by CEL;
- label-selector syntax inside values: ``matchLabels`` keys and values, and
  ``matchExpressions`` keys and values, as in the Kubernetes API conventions (qualified
  names; values of at most 63 characters, alphanumeric at both ends);
- an analysis query that is not PromQL returning one number (parsed by ``promql-parser``
  with its placeholders replaced, :mod:`edgeops.policy.promql`);
- a cron schedule the controllers' parser refuses (``61 * * * *``, ``*/0 * * * *``, a
  weekday 8: the CRD's pattern only checks the shape);
- a gate on a metric the evaluator never reports (it would hold every version back
  forever): the overall metrics plus ``<export>_accuracy|_size_bytes|_latency_ms|_macs|
  _elementwise_ops|_operators`` of the exports the model's training asks for; likewise a
  gate's ``confidence`` on a metric without an interval at that level;
- a free-form trainer ``config`` over :data:`MAX_FREE_FORM_BYTES` of JSON (kubectl keeps a
  copy of the spec in a 256 KiB annotation; etcd takes 1.5 MiB per object);
- a spec over :data:`edgeops.api.common.MAX_SPEC_BYTES` of compact, ASCII-escaped JSON
  (Kopf's copy of it must fit the 256 KiB of annotations), naming its largest field
  (checked by the spec models, :class:`edgeops.api.common.SpecRoot`);
- any pydantic validation error of the spec models (the same messages the controllers
  would report as ``InvalidSpec``).

Warned about (admitted; ``kubectl`` prints ``Warning: ...``): what is legal but most
likely a mistake (an onDrift window shorter than its interval, a cron that never fires such
as ``0 0 31 2 *``), see :func:`review`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ValidationError

from edgeops.api.common import GO_DURATION
from edgeops.api.dataset import DatasetSpec
from edgeops.api.device import DeviceSpec
from edgeops.api.edgemodel import EdgeModelSpec
from edgeops.api.fleetrollout import FleetRolloutSpec
from edgeops.api.trainingrun import TrainingRunSpec
from edgeops.policy.cron import never_fires, parse_cron, parse_duration
from edgeops.policy.promql import query_errors

#: Overall metrics every evaluation reports (``edgeops.training.evaluation``).
OVERALL_METRICS: Final = frozenset({"accuracy", "macro_f1", "ece", "fairness_gap"})
#: Per-export metrics, as ``<export with - as _>_<suffix>`` (``edgeops.training.evaluate``).
EXPORT_METRIC_SUFFIXES: Final = (
    "accuracy",
    "size_bytes",
    "latency_ms",
    "macs",
    "elementwise_ops",
    "operators",
)
#: Metrics whose interval is a proportion's (Wilson, recomputed at any level) and those
#: with the evaluator's bootstrap interval at :data:`BOOTSTRAP_CONFIDENCE` only.
PROPORTION_METRICS: Final = frozenset({"accuracy"})
BOOTSTRAP_METRICS: Final = frozenset({"macro_f1", "ece"})
BOOTSTRAP_CONFIDENCE: Final = 0.95

SPECS: Final[dict[str, type[BaseModel]]] = {
    "datasets": DatasetSpec,
    "trainingruns": TrainingRunSpec,
    "edgemodels": EdgeModelSpec,
    "fleetrollouts": FleetRolloutSpec,
    "devices": DeviceSpec,
}

_NAME: Final = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN: Final = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DURATION_PATTERN: Final = f"^{GO_DURATION}$"


@dataclass
class Review:
    """The webhook's answer: ``errors`` refuse the object (each names its field),
    ``warnings`` are shown to the client and admit it."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def review(plural: str, obj: Mapping[str, Any]) -> Review:
    """Reviews an EdgeOps object of kind ``plural`` (e.g. ``devices``) as the API server
    sends it (after schema and CEL validation). Raises KeyError for a kind it does not
    know."""
    model = SPECS[plural]
    spec = obj.get("spec") or {}
    result = Review()
    try:
        model.model_validate(spec)
    except ValidationError as error:
        for detail in error.errors():
            dotted = ".".join(str(p) for p in ("spec", *detail["loc"]))
            # spec.analysis.metrics[0].query, as the API server names fields in CEL messages
            where = "spec" + "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in detail["loc"]
            )
            message = (
                detail["msg"]
                .removeprefix("Value error, ")
                .removeprefix(f"{dotted}: ")
                .removeprefix(f"{where}: ")
            )
            result.errors.append(f"{where}: {message}")
    result.errors.extend(_selectors(spec, "spec"))
    result.errors.extend(schedule_errors(plural, spec))
    result.warnings.extend(schedule_warnings(plural, spec))
    result.errors.extend(_free_form_sizes(spec))
    if plural == "devices":
        result.errors.extend(_device_keys(spec))
    if plural == "edgemodels":
        result.errors.extend(_gate_metrics(spec))
        template = (spec.get("promotion") or {}).get("rolloutTemplate")
        result.errors.extend(query_errors(template, "spec.promotion.rolloutTemplate"))
        result.warnings.extend(_model_warnings(spec))
    if plural == "fleetrollouts":
        result.errors.extend(query_errors(spec))
        result.warnings.extend(_rollout_warnings(spec))
    return result


def _walk(value: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) of every mapping entry under ``value``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield path, str(key), item
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


# --- free-form fields -----------------------------------------------------------------------

#: Largest free-form trainer ``config`` (its JSON, bytes). The whole object must stay far
#: below etcd's 1.5 MiB request limit and the 256 KiB annotation limit of tools that keep a
#: copy of the spec (kubectl's last-applied-configuration).
MAX_FREE_FORM_BYTES: Final = 64 * 1024


def _free_form_sizes(spec: Any) -> Iterator[str]:
    for path, key, value in _walk(spec, "spec"):
        if key == "config" and path.endswith(".trainer") and value is not None:
            size = len(json.dumps(value, separators=(",", ":")).encode())
            if size > MAX_FREE_FORM_BYTES:
                yield (
                    f"{path}.config: {size} bytes of JSON, more than the {MAX_FREE_FORM_BYTES} "
                    "a trainer config may hold (put large inputs in S3 and pass their URI)"
                )


# --- cron schedules -------------------------------------------------------------------------

#: Where each kind keeps a schedule: cron, or (Datasets) cron or a duration.
_SCHEDULES: Final = {
    "datasets": ("collection", "schedule"),
    "edgemodels": ("retrain", "schedule"),
}


def schedule_errors(plural: str, spec: Mapping[str, Any]) -> list[str]:
    """The schedule of a Dataset or EdgeModel spec checked by the same parser the
    controllers run it with, so a schedule the API admits always runs (the CRD's pattern
    alone admits ``61 * * * *``). The controllers call it too: a bad schedule stored while
    the webhook was down (failurePolicy Ignore) is ``InvalidSpec``, never a timer that
    fails in the log. Empty when fine or when the kind has no schedule."""
    if plural not in _SCHEDULES:
        return []
    parent, key = _SCHEDULES[plural]
    schedule = (spec.get(parent) or {}).get(key)
    if not isinstance(schedule, str):
        return []
    if plural == "datasets":
        try:
            parse_duration(schedule)
            return []
        except ValueError:
            pass
    try:
        parse_cron(schedule)
    except ValueError as error:
        return [f"spec.{parent}.{key}: {error}"]
    return []


def schedule_warnings(plural: str, spec: Mapping[str, Any]) -> list[str]:
    """A valid cron schedule that never fires (``0 0 31 2 *``): legal, almost surely a
    mistake, so admitted with a warning. Empty when fine or not a cron."""
    if plural not in _SCHEDULES:
        return []
    parent, key = _SCHEDULES[plural]
    schedule = (spec.get(parent) or {}).get(key)
    if not isinstance(schedule, str) or schedule_errors(plural, spec):
        return []
    try:
        parse_duration(schedule)
        return []  # a duration fires
    except ValueError:
        pass
    why = never_fires(schedule)
    return [f"spec.{parent}.{key}: {schedule!r} never fires: {why}"] if why else []


# --- label selectors ------------------------------------------------------------------------


def label_key_error(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes label key (``[prefix/]name``), or None if it is."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"label key {key!r}: the prefix must be a DNS subdomain"
    if not name or len(name) > 63 or not _NAME.match(name):
        return (
            f"label key {key!r}: the name must be at most 63 characters, alphanumeric at "
            "both ends, with - _ . between"
        )
    return None


def label_value_error(value: Any) -> str | None:
    """Why ``value`` is not a Kubernetes label value, or None if it is."""
    if not isinstance(value, str):
        return f"label value {value!r} must be a string"
    if value and (len(value) > 63 or not _NAME.match(value)):
        return (
            f"label value {value!r}: must be empty or at most 63 characters, alphanumeric "
            "at both ends, with - _ . between"
        )
    return None


def _selectors(spec: Any, root: str) -> Iterator[str]:
    for path, key, value in _walk(spec, root):
        if key == "matchLabels" and isinstance(value, Mapping):
            for label, wanted in value.items():
                for problem in (label_key_error(str(label)), label_value_error(wanted)):
                    if problem:
                        yield f"{path}.matchLabels: {problem}"
        if key == "matchExpressions" and isinstance(value, list):
            for index, requirement in enumerate(value):
                if not isinstance(requirement, Mapping):
                    continue
                where = f"{path}.matchExpressions[{index}]"
                problem = label_key_error(str(requirement.get("key", "")))
                if problem:
                    yield f"{where}.key: {problem}"
                for item in requirement.get("values") or []:
                    problem = label_value_error(item)
                    if problem:
                        yield f"{where}.values: {problem}"


# --- Device keys ----------------------------------------------------------------------------


def raw_key(text: str) -> bytes | None:
    """The 32 raw bytes of an Ed25519 public key given as base64 of those bytes or as a PEM
    SubjectPublicKeyInfo (RFC 8410), or None when it is neither (parsed by
    ``cryptography``)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except (ValueError, TypeError):
            return None
        if not isinstance(key, Ed25519PublicKey):
            return None
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(text, validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        return None
    return raw


def _device_keys(spec: Mapping[str, Any]) -> Iterator[str]:
    identity = spec.get("identity")
    if not isinstance(identity, Mapping):
        return
    key = raw_key(str(identity.get("publicKey", "")))
    if key is None:
        yield (
            "spec.identity.publicKey: not an Ed25519 public key (base64 of its 32 raw bytes, "
            "or a PEM SubjectPublicKeyInfo with OID 1.3.101.112)"
        )
    fingerprint = identity.get("fingerprint")
    if key is not None and fingerprint and fingerprint != hashlib.sha256(key).hexdigest():
        yield (
            f"spec.identity.fingerprint: {fingerprint} is not the SHA-256 of publicKey "
            f"({hashlib.sha256(key).hexdigest()})"
        )
    following = identity.get("nextPublicKey")
    if following is not None:
        next_key = raw_key(str(following))
        if next_key is None:
            yield "spec.identity.nextPublicKey: not an Ed25519 public key"
        elif next_key == key:
            yield "spec.identity.nextPublicKey: the same key as publicKey rotates nothing"


# --- EdgeModel gates ------------------------------------------------------------------------


def reported_metrics(exports: list[str]) -> frozenset[str]:
    """Every overall metric an evaluation of a model with these exports reports."""
    per_export = {
        f"{export.replace('-', '_')}_{suffix}"
        for export in exports
        for suffix in EXPORT_METRIC_SUFFIXES
    }
    return OVERALL_METRICS | per_export


def _gate_metrics(spec: Mapping[str, Any]) -> Iterator[str]:
    training = spec.get("training") or {}
    exports = list(training.get("exports") or ["onnx", "tflite", "tflite-int8", "tflm"])
    known = reported_metrics(exports)
    gates = spec.get("gates") or {}
    for kind in ("absolute", "relative"):
        for index, gate in enumerate(gates.get(kind) or []):
            metric = gate.get("metric") if isinstance(gate, Mapping) else None
            if isinstance(metric, str) and metric not in known:
                yield (
                    f"spec.gates.{kind}[{index}].metric: {metric!r} is never reported by the "
                    f"evaluation of this model (exports {', '.join(sorted(exports))}); it "
                    f"reports {', '.join(sorted(known))}"
                )
            elif isinstance(metric, str) and kind == "absolute":
                problem = _interval_problem(metric, gate.get("confidence"))
                if problem:
                    yield f"spec.gates.absolute[{index}].confidence: {problem}"


def _interval_problem(metric: str, confidence: Any) -> str | None:
    """Why a gate's ``confidence`` can never be honoured for ``metric``, or None."""
    if confidence is None:
        return None
    if metric in PROPORTION_METRICS or metric.endswith("_accuracy"):
        return None
    if metric in BOOTSTRAP_METRICS:
        if isinstance(confidence, int | float) and abs(confidence - BOOTSTRAP_CONFIDENCE) < 1e-9:
            return None
        return (
            f"{metric} has a bootstrap interval at {BOOTSTRAP_CONFIDENCE} only (set confidence "
            f"{BOOTSTRAP_CONFIDENCE} or gate a proportion such as accuracy)"
        )
    return (
        f"{metric!r} has no confidence interval (only accuracy, <export>_accuracy, macro_f1 "
        "and ece have one)"
    )


def _model_warnings(spec: Mapping[str, Any]) -> Iterator[str]:
    drift = ((spec.get("retrain") or {}).get("onDrift")) or {}
    if drift.get("enabled"):
        try:
            window = parse_duration(str(drift.get("window", "1h")))
            interval = parse_duration(str(drift.get("interval", "5m")))
        except ValueError:
            return
        if window < interval:
            yield (
                f"spec.retrain.onDrift: window {drift.get('window')} is shorter than interval "
                f"{drift.get('interval')}: telemetry between two windows is never measured"
            )


def _rollout_warnings(spec: Mapping[str, Any]) -> Iterator[str]:
    steps = spec.get("steps") or []
    metrics = (spec.get("analysis") or {}).get("metrics") or []
    if steps and isinstance(steps[0], Mapping) and steps[0].get("percent") == 100 and not metrics:
        yield (
            "spec.steps[0]: 100 % at once without analysis tells every selected device to "
            "update before any has reported on the new version"
        )
    timeout, deadline = spec.get("deviceTimeout", "1h"), spec.get("progressDeadlineSeconds", 3600)
    try:
        timeout_s = parse_duration(str(timeout)).total_seconds()
    except ValueError:
        return  # the schema refuses it
    if isinstance(deadline, int) and timeout_s > deadline:
        yield (
            f"spec.deviceTimeout: {timeout} is longer than progressDeadlineSeconds "
            f"{deadline}: a silent device never times out before its step pauses "
            "(StepDeadline), so it is waited for, not counted as TimedOut"
        )
