"""Bounds every kind's spec shares (trial of issue 16, bugs 1, 2 and C3): durations from 1 s
(0 s where it means "no wait") to 10 years, a total spec size Kopf's bookkeeping can hold,
and cron messages that say what is wrong. The API server applies the CEL twins to the
corpus in tests/integration/test_crds.py."""

from __future__ import annotations

import json
from typing import Any

import kopf
import pytest
from pydantic import ValidationError

from edgeops.api.common import MAX_SPEC_BYTES, describe_validation_error, json_size
from edgeops.api.dataset import DatasetSpec
from edgeops.controllers.runtime import MAX_DIFFBASE_BYTES, BoundedDiffBaseStorage
from edgeops.policy.admission import review
from edgeops.policy.cron import never_fires, parse_cron


def _dataset(**spec: Any) -> dict[str, Any]:
    return {"spec": {"sources": [{"builtin": {"name": "digits"}}],
                     "governance": {"classification": "public"}, **spec}}  # fmt: skip


def _model(**spec: Any) -> dict[str, Any]:
    return {"spec": {
        "training": {"datasetRef": {"name": "d"}, "exports": ["onnx"]},
        "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}], **spec,
    }}  # fmt: skip


def _rollout(**spec: Any) -> dict[str, Any]:
    return {"spec": {"modelRef": {"name": "m"}, "version": 2,
                     "steps": [{"percent": 100}], **spec}}  # fmt: skip


SHORT = "is shorter than the 1s any EdgeOps period or timeout must be"


@pytest.mark.parametrize(
    ("plural", "obj", "message"),
    [
        ("datasets", _dataset(collection={"schedule": "0s"}),
         f"spec.collection.schedule: 0s {SHORT}"),
        ("datasets", _dataset(collection={"schedule": "500ms"}),
         f"spec.collection.schedule: 500ms {SHORT}"),
        ("datasets", _dataset(collection={"schedule": "0.5s"}),
         f"spec.collection.schedule: 0.5s {SHORT}"),
        ("datasets", _dataset(collection={"schedule": "99999h"}),
         "spec.collection.schedule: 99999h is longer than the 10 years (87600h) any EdgeOps "
         "duration may be"),
        ("edgemodels", _model(retrain={"onDrift": {"interval": "1ms"}}),
         f"spec.retrain.onDrift.interval: 1ms {SHORT}"),
        ("edgemodels", _model(retrain={"cooldown": "0s"}), f"spec.retrain.cooldown: 0s {SHORT}"),
        ("fleetrollouts", _rollout(deviceTimeout="0s"), f"spec.deviceTimeout: 0s {SHORT}"),
        ("fleetrollouts", _rollout(analysis={"metrics": [], "interval": "0s"}),
         f"spec.analysis.interval: 0s {SHORT}"),
    ],
)  # fmt: skip
def test_durations_under_one_second_or_over_ten_years_are_refused(
    plural: str, obj: dict[str, Any], message: str
) -> None:
    assert message in review(plural, obj).errors


def test_zero_means_no_wait_where_a_wait_is_one_off() -> None:
    assert review("fleetrollouts", _rollout(bakeTime="0s")).errors == []
    steps = [{"percent": 50, "pause": {"duration": "0s"}}, {"percent": 100}]
    assert review("fleetrollouts", _rollout(steps=steps)).errors == []
    for fine in ("1s", "2s", "87600h", "0 3 * * *", "@daily"):
        assert review("datasets", _dataset(collection={"schedule": fine})).errors == []


def test_the_controllers_name_the_field_of_a_bad_duration() -> None:
    with pytest.raises(ValidationError) as raised:
        DatasetSpec.model_validate(_dataset(collection={"schedule": "0s"})["spec"])
    assert describe_validation_error(raised.value) == f"spec.collection.schedule: 0s {SHORT}"


def _too_big() -> dict[str, Any]:
    """The trial's Dataset: 256 features, 16 missing tokens each of 'é'*30 + NN."""
    tokens = [f"{'é' * 30}{n:02d}" for n in range(16)]
    features = [{"name": f"f{i}", "type": "float", "missingTokens": tokens} for i in range(256)]
    return _dataset(schema={"features": features, "label": "f0"})


def test_a_spec_too_big_for_kopfs_annotation_is_refused_naming_where_its_bytes_are() -> None:
    obj = _too_big()
    size = json_size(obj["spec"])
    assert size > 2 * 256 * 1024  # \u00e9 is 6 bytes: what Kopf would have written
    errors = review("datasets", obj).errors
    features = json_size(obj["spec"]["schema"]["features"])
    assert errors == [
        f"spec: {size} bytes of JSON (non-ASCII escaped), more than the {MAX_SPEC_BYTES} a "
        f"spec may hold; the largest field is spec.schema.features ({features} bytes)"
    ]
    with pytest.raises(ValidationError) as raised:
        DatasetSpec.model_validate(obj["spec"])
    assert describe_validation_error(raised.value) == errors[0]  # the InvalidSpec condition


def test_one_big_field_is_named_down_to_the_leaf() -> None:
    run = {"spec": {"datasetRef": {"name": "d"}, "exports": ["onnx"],
                    "trainer": {"config": {"small": 1, "blob": "é" * 20_000}}}}  # fmt: skip
    errors = review("trainingruns", run).errors
    assert any("the largest field is spec.trainer.config.blob (120002 bytes)" in e for e in errors)


def test_kopf_diffbase_is_not_written_for_an_object_too_big_for_it() -> None:
    storage = BoundedDiffBaseStorage(prefix="kopf.edgeops.dev", key="last-handled-configuration")
    body = kopf.Body({"metadata": {"name": "d", "namespace": "ns"}, "spec": {}})  # type: ignore[arg-type]
    key = "kopf.edgeops.dev/last-handled-configuration"
    small = kopf.Patch()
    storage.store(body=body, patch=small, essence={"spec": {"a": 1}})  # type: ignore[typeddict-unknown-key]
    assert json.loads(small["metadata"]["annotations"][key]) == {"spec": {"a": 1}}
    big = kopf.Patch()
    essence = {"spec": {"a": "é" * (MAX_DIFFBASE_BYTES // 6 + 1)}}
    storage.store(body=body, patch=big, essence=essence)  # type: ignore[typeddict-unknown-key]
    assert key not in (big.get("metadata") or {}).get("annotations", {})


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("5-1 * * * *", "cron minute '5-1': the range 5-1 is reversed (5 > 1); cron ranges do "
         "not wrap around, write 5-59,0-1"),
        ("0 0 * * FRI-MON", "cron day-of-week 'FRI-MON': the range FRI-MON is reversed (5 > 1); "
         "cron ranges do not wrap around, write FRI-SAT,SUN-MON"),
        ("0 0 * * 6-0", "cron day-of-week '6-0': the range 6-0 is reversed (6 > 0); cron ranges "
         "do not wrap around, write 6,0"),
        ("0 0 L * *", "cron value 'L' is not a number (this cron has no L, W, ? or # fields)"),
        ("0 0 1 Jan-XYZ *", "cron value 'XYZ' is not a number (this cron has no L, W, ? or # "
         "fields)"),
    ],
)  # fmt: skip
def test_cron_messages_say_what_is_wrong_as_written(expression: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_cron(expression)
    assert str(raised.value) == message


def test_a_cron_that_never_fires_is_admitted_with_a_warning() -> None:
    assert never_fires("0 0 29 2 *") is None  # leap years
    assert never_fires("0 0 31 2 1") is None  # day-of-month OR Mondays
    for plural, obj, where in [
        ("datasets", _dataset(collection={"schedule": "0 0 31 2 *"}), "collection"),
        ("edgemodels", _model(retrain={"schedule": "0 0 31 2 *"}), "retrain"),
    ]:
        result = review(plural, obj)
        assert result.errors == []
        assert result.warnings == [
            f"spec.{where}.schedule: '0 0 31 2 *' never fires: day-of-month 31 never occurs in Feb"
        ]
    thirtieth = review("datasets", _dataset(collection={"schedule": "0 0 30,31 2,4 *"}))
    assert thirtieth.warnings == []  # April 30 exists
    assert review("datasets", _dataset(collection={"schedule": "0 0 30 2 *"})).warnings == [
        "spec.collection.schedule: '0 0 30 2 *' never fires: day-of-month 30 never occurs in Feb"
    ]
