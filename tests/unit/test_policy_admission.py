"""The admission webhook's checks (edgeops.policy.admission): what the CRD schemas and CEL
cannot express. The devcluster's API server calls them through the operator's webhook in
tests/integration/test_crds.py (the invalid-spec corpus) and test_admission.py."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeops.policy.admission import raw_key, reported_metrics, review

KEY = Ed25519PrivateKey.generate().public_key()
RAW = KEY.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
B64 = base64.b64encode(RAW).decode()
PEM = KEY.public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()


def _device(**identity: Any) -> dict[str, Any]:
    return {"spec": {"targetType": "linux", "identity": identity}}


def _model(**spec: Any) -> dict[str, Any]:
    return {"spec": {
        "training": {"datasetRef": {"name": "d"}, "exports": ["onnx", "tflite-int8"]},
        "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}], **spec,
    }}  # fmt: skip


def _rollout(**spec: Any) -> dict[str, Any]:
    return {"spec": {"modelRef": {"name": "m"}, "version": 2,
                     "steps": [{"percent": 10}, {"percent": 100}], **spec}}  # fmt: skip


def test_device_keys_must_be_ed25519_and_agree_with_their_fingerprint() -> None:
    assert raw_key(B64) == RAW and raw_key(PEM) == RAW
    good = review("devices", _device(publicKey=B64, fingerprint=hashlib.sha256(RAW).hexdigest()))
    assert good.errors == []
    assert review("devices", _device(publicKey=PEM)).errors == []

    short = base64.b64encode(RAW[:31]).decode()
    # 31 bytes: the models' pattern (the CRD's too) already refuses it, naming the field.
    errors = review("devices", _device(publicKey=short)).errors
    assert errors[0].startswith("spec.identity.publicKey")
    ecdsa = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert (
        review("devices", _device(publicKey=ecdsa)).errors[0].startswith("spec.identity.publicKey")
    )
    wrong = review("devices", _device(publicKey=B64, fingerprint="0" * 64)).errors
    assert wrong == [
        f"spec.identity.fingerprint: {'0' * 64} is not the SHA-256 of publicKey "
        f"({hashlib.sha256(RAW).hexdigest()})"
    ]
    same = review("devices", _device(publicKey=B64, nextPublicKey=PEM)).errors
    assert same == ["spec.identity.nextPublicKey: the same key as publicKey rotates nothing"]


@pytest.mark.parametrize(
    ("plural", "obj", "field"),
    [
        ("edgemodels", _model(retrain={"cooldown": "99999999h"}), "spec.retrain.cooldown"),
        ("edgemodels", _model(retrain={"onDrift": {"window": "87601h"}}),
         "spec.retrain.onDrift.window"),
        ("fleetrollouts", _rollout(deviceTimeout="1000000h"), "spec.deviceTimeout"),
        ("fleetrollouts", _rollout(bakeTime="90000h"), "spec.bakeTime"),
    ],
)  # fmt: skip
def test_durations_longer_than_ten_years_are_refused(
    plural: str, obj: dict[str, Any], field: str
) -> None:
    errors = review(plural, obj).errors
    assert len(errors) == 1 and errors[0].startswith(f"{field}: "), errors
    assert "longer than the 10 years" in errors[0]


def test_a_ten_year_duration_is_the_longest_admitted() -> None:
    assert review("edgemodels", _model(retrain={"cooldown": "87600h"})).errors == []


def test_label_selector_syntax_inside_values() -> None:
    region = {"key": "region", "operator": "In", "values": ["eu-1"]}
    ok = {"matchLabels": {"edgeops.dev/site": "plant-1", "lab": ""}, "matchExpressions": [region]}
    assert review("fleetrollouts", _rollout(selector=ok)).errors == []
    wrong = {"key": "a/b/c", "operator": "In", "values": ["-x"]}
    bad = {
        "matchLabels": {"Site!": "a", "edgeops.dev/site": "plant 1"},
        "matchExpressions": [wrong],
    }
    errors = review("fleetrollouts", _rollout(selector=bad)).errors
    assert [e.split(":")[0] for e in errors] == [
        "spec.selector.matchLabels",
        "spec.selector.matchLabels",
        "spec.selector.matchExpressions[0].key",
        "spec.selector.matchExpressions[0].values",
    ]
    assert "'Site!'" in errors[0] and "'plant 1'" in errors[1] and "'-x'" in errors[3]


def test_gates_on_metrics_the_evaluation_never_reports_are_refused() -> None:
    assert {"accuracy", "onnx_latency_ms", "tflite_int8_accuracy"} <= reported_metrics(
        ["onnx", "tflite-int8"]
    )
    gates = {"absolute": [{"metric": "accuracy", "op": ">=", "threshold": 0.8},
                          {"metric": "tflite_int8_size_bytes", "op": "<=", "threshold": 1e5}],
             "relative": [{"metric": "macro_f1", "maxDegradation": 0.02}]}  # fmt: skip
    assert review("edgemodels", _model(gates=gates)).errors == []
    gates = {"absolute": [{"metric": "acuracy", "op": ">=", "threshold": 0.8}],
             "relative": [{"metric": "tflm_accuracy", "maxDegradation": 0.02}]}  # fmt: skip
    errors = review("edgemodels", _model(gates=gates)).errors
    assert errors[0].startswith("spec.gates.absolute[0].metric: 'acuracy' is never reported")
    assert errors[1].startswith("spec.gates.relative[0].metric: 'tflm_accuracy'")
    assert "exports onnx, tflite-int8" in errors[1]


def test_a_gate_confidence_needs_a_metric_with_an_interval_at_that_level() -> None:
    def gate(metric: str, confidence: float) -> dict[str, Any]:
        return {"metric": metric, "op": ">=", "threshold": 0.8, "confidence": confidence}

    ok = [gate("accuracy", 0.99), gate("tflite_int8_accuracy", 0.9), gate("macro_f1", 0.95)]
    assert review("edgemodels", _model(gates={"absolute": ok})).errors == []
    bad = {"absolute": [gate("ece", 0.99), gate("onnx_latency_ms", 0.95)]}
    errors = review("edgemodels", _model(gates=bad)).errors
    assert errors == [
        "spec.gates.absolute[0].confidence: ece has a bootstrap interval at 0.95 only (set "
        "confidence 0.95 or gate a proportion such as accuracy)",
        "spec.gates.absolute[1].confidence: 'onnx_latency_ms' has no confidence interval (only "
        "accuracy, <export>_accuracy, macro_f1 and ece have one)",
    ]


def test_likely_mistakes_are_warnings_not_refusals() -> None:
    drift = {"onDrift": {"enabled": True, "window": "1m", "interval": "5m"}}
    result = review("edgemodels", _model(retrain=drift))
    assert result.errors == [] and "window 1m is shorter than interval 5m" in result.warnings[0]
    result = review("fleetrollouts", _rollout(steps=[{"percent": 100}]))
    assert result.errors == [] and result.warnings[0].startswith("spec.steps[0]: 100 %")
    assert review("fleetrollouts", _rollout()).warnings == []
    late = review("fleetrollouts", _rollout(deviceTimeout="5h", progressDeadlineSeconds=60))
    assert late.errors == [] and late.warnings == [
        "spec.deviceTimeout: 5h is longer than progressDeadlineSeconds 60: a silent device "
        "never times out before its step pauses (StepDeadline), so it is waited for, not "
        "counted as TimedOut"
    ]


def test_the_spec_models_own_checks_name_the_field() -> None:
    errors = review("edgemodels", {"spec": {"targets": []}}).errors
    assert errors and all(e.startswith("spec.") for e in errors)


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("61 * * * *", "cron minute '61': values must be within 0-59"),
        ("0 25 * * *", "cron hour '25': values must be within 0-23"),
        ("*/0 * * * *", "cron minute '*/0': step must be >= 1"),
        ("0 0 * * 8", "cron day-of-week '8': values must be within 0-7"),
    ],
)
def test_schedules_are_checked_by_the_parser_that_runs_them(schedule: str, problem: str) -> None:
    dataset = {"spec": {"sources": [{"builtin": {"name": "digits"}}],
                        "governance": {"classification": "public"},
                        "collection": {"schedule": schedule}}}  # fmt: skip
    assert review("datasets", dataset).errors == [f"spec.collection.schedule: {problem}"]
    model = _model(retrain={"schedule": schedule})
    assert review("edgemodels", model).errors == [f"spec.retrain.schedule: {problem}"]
    for fine in ("5m", "1h30m", "0 3 * * 0", "@daily"):
        dataset["spec"]["collection"]["schedule"] = fine
        assert review("datasets", dataset).errors == []


def test_free_form_trainer_config_is_bounded() -> None:
    run = {"spec": {"datasetRef": {"name": "d"}, "exports": ["onnx"],
                    "trainer": {"config": {"layers": [64] * 10}}}}  # fmt: skip
    assert review("trainingruns", run).errors == []
    run["spec"]["trainer"]["config"] = {"blob": "x" * 300_000}
    errors = review("trainingruns", run).errors
    # The whole spec is over its bound too (edgeops.api.common.MAX_SPEC_BYTES).
    assert len(errors) == 2 and errors[1].startswith("spec.trainer.config: 300011 bytes of JSON")
    assert errors[0].endswith("the largest field is spec.trainer.config.blob (300002 bytes)")
    model = _model()
    model["spec"]["training"]["trainer"] = {"config": {"blob": "x" * 70_000}}
    errors = review("edgemodels", model).errors
    assert any(e.startswith("spec.training.trainer.config: ") for e in errors), errors


@pytest.mark.parametrize(
    ("query", "expect"),
    [
        ('sum(rate(x{version="{{version}}"}[5m])', "not valid PromQL: unclosed left parenthesis"),
        ("rat(x[5m])", "not valid PromQL: unknown function with name 'rat'"),
        ('avg(x{model="{{ modle }}"})', "unknown placeholder {{ modle }}"),
        ("x[5m]", "a range vector is not one number"),
        ('"0.9"', "a string is not a number"),
    ],
)
def test_invalid_promql_is_refused_naming_the_field(query: str, expect: str) -> None:
    """The trial's invalid PromQL was admitted, then Errored at every measurement."""
    metrics = [
        {"name": "ok", "query": "vector(1)", "threshold": 1, "op": ">="},
        {"name": "bad", "query": query, "threshold": 1, "op": ">="},
    ]
    errors = review("fleetrollouts", _rollout(analysis={"metrics": metrics})).errors
    assert len(errors) == 1 and errors[0].startswith(f"spec.analysis.metrics[1].query: {expect}")


@pytest.mark.parametrize(
    "query",
    [
        'sum(increase(edgeops_device_feedback_total{model="{{model}}",version="{{version}}",'
        'outcome="correct"}[5m])) / sum(increase(edgeops_device_feedback_total{model="{{model}}"'
        ',version="{{version}}"}[5m]))',
        'histogram_quantile(0.95, sum by (le) (rate(x_bucket{cohort="{{ cohort }}"}[5m])))',
        'avg(x{namespace="{{namespace}}", version="{{stableVersion}}"} offset 5m)',
        "vector(1)",
    ],
)
def test_valid_promql_with_placeholders_is_admitted(query: str) -> None:
    metrics = [{"name": "m", "query": query, "threshold": 1, "op": ">="}]
    assert review("fleetrollouts", _rollout(analysis={"metrics": metrics})).errors == []
