"""The pydantic models reject what the API server rejects, for the same field.

The integration tier applies tests/integration/invalid/*.yaml to a real API server; here the
same corpus goes through the models offline. Cross-field rules exist twice (CEL for the
server, a model validator for Python), so both must fail each corpus object, and with the
same message when the corpus expects a CEL message.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from edgeops.api import (
    KINDS_BY_NAME,
    DatasetSpec,
    FleetRolloutSpec,
    InboxSource,
    LabelSelector,
    ResourceRequirements,
    S3Location,
    TrainingRunSpec,
    TrainingRunStatus,
)
from edgeops.policy import admission

CORPUS = sorted((Path(__file__).resolve().parents[1] / "integration" / "invalid").glob("*.yaml"))


def expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    return first.removeprefix("# expect: ").strip()


def expected_field(expect: str) -> str | None:
    """The field path an API server message starts with, dotted ('spec.steps.0.percent')."""
    quoted = re.search(r'unknown field "([^"]+)"', expect)
    raw = quoted.group(1) if quoted else expect.split(":", 1)[0]
    if not raw.startswith("spec"):
        return None
    return re.sub(r"\[(\d+)\]", r".\1", raw.replace("[]", ""))


def same_field(expected: str, error: ErrorDetails) -> bool:
    loc = ".".join(["spec", *(str(part) for part in error["loc"])])
    if loc == "spec":  # a model-level validator: its message must name the field
        return re.sub(r"\.\d+", "", expected) in error["msg"]
    return expected.startswith(loc) or loc.startswith(expected)


def test_corpus_is_large_and_well_formed() -> None:
    assert len(CORPUS) >= 30
    kinds = set()
    for path in CORPUS:
        expectation(path)
        doc = yaml.safe_load(path.read_text())
        assert "namespace" not in doc["metadata"], path.name
        kinds.add(doc["kind"])
    assert kinds == set(KINDS_BY_NAME)


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_models_reject_corpus(path: Path) -> None:
    expect = expectation(path)
    doc = yaml.safe_load(path.read_text())
    kind = KINDS_BY_NAME[doc["kind"]]
    if expect.startswith("metadata.name"):
        assert len(doc["metadata"]["name"]) > kind.name_max_length
        kind.spec.model_validate(doc["spec"])  # only the name is wrong
        return
    try:
        kind.spec.model_validate(doc["spec"])
    except ValidationError as raised:
        errors = raised.errors()
    else:
        # What the models cannot see, the admission webhook refuses (the API server calls
        # it after the schema and CEL in tests/integration/test_crds.py).
        refused = admission.review(f"{doc['kind'].lower()}s", doc).errors
        assert any(expect in e for e in refused), f"expected {expect!r}, admission: {refused}"
        return
    field = expected_field(expect)
    assert any(
        expect in e["msg"] or (field is not None and same_field(field, e)) for e in errors
    ), f"expected {expect!r}, pydantic said {errors}"


def test_defaults_match_the_crd_defaults() -> None:
    spec = DatasetSpec.model_validate(
        {"sources": [{"builtin": {"name": "digits"}}], "governance": {"classification": "public"}}
    )
    assert (spec.split.train, spec.split.validation, spec.split.test) == (0.8, 0.1, 0.1)
    assert spec.format == "csv"
    assert spec.history_limit == 10
    assert spec.validation.max_rejected_fraction == 0.05


def test_python_names_and_json_names() -> None:
    spec = FleetRolloutSpec(
        model_ref={"name": "m"},
        version=2,
        steps=[{"percent": 100}],
    )
    dumped = spec.model_dump(by_alias=True, exclude_unset=True)
    assert dumped == {"modelRef": {"name": "m"}, "version": 2, "steps": [{"percent": 100}]}


@pytest.mark.parametrize("value", [1, "500m", "2Gi", "1.5", "1e3"])
def test_quantities_accepted(value: int | str) -> None:
    ResourceRequirements.model_validate({"limits": {"cpu": value}})


@pytest.mark.parametrize("value", ["two", "1 Gi", "", "2GB"])
def test_quantities_rejected(value: str) -> None:
    with pytest.raises(ValidationError):
        ResourceRequirements.model_validate({"limits": {"memory": value}})


def test_selector_operators() -> None:
    LabelSelector.model_validate({"matchExpressions": [{"key": "k", "operator": "Exists"}]})
    with pytest.raises(ValidationError):
        LabelSelector.model_validate(
            {"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["x"]}]}
        )


def test_timestamps_are_kept_as_api_strings() -> None:
    from datetime import UTC, datetime

    status = TrainingRunStatus.model_validate(
        {"startTime": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)}
    )
    assert status.start_time == "2025-01-02T03:04:05Z"
    with pytest.raises(ValidationError):
        TrainingRunStatus.model_validate({"startTime": "yesterday"})
    with pytest.raises(ValidationError):
        TrainingRunStatus.model_validate({"startTime": "2025-01-02T03:04:05"})  # no zone


def test_status_ignores_unknown_fields_spec_does_not() -> None:
    TrainingRunStatus.model_validate({"phase": "Running", "futureField": 1})
    with pytest.raises(ValidationError):
        TrainingRunSpec.model_validate(
            {"datasetRef": {"name": "d"}, "exports": ["onnx"], "futureField": 1}
        )


@pytest.mark.parametrize("prefix", ["inbox/team/imu/", "inbox/team/", "inbox/team/imu/2026/"])
def test_inbox_prefixes_accepted(prefix: str) -> None:
    assert InboxSource.model_validate({"prefix": prefix}).prefix == prefix


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("blobs/", "must start with inbox/<namespace>/"),
        ("datasets/team/imu/", "must start with inbox/<namespace>/"),
        ("inbox/", "must start with inbox/<namespace>/"),
        ("inbox//", "must start with inbox/<namespace>/"),
        ("inbox/Team/imu/", "must start with inbox/<namespace>/"),
        ("", "must start with inbox/<namespace>/"),
        ("inbox/team/imu", "must end with /"),
        ("inbox/team/../other/imu/", "must not contain '..'"),
    ],
)
def test_inbox_prefixes_rejected(prefix: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(f"sources[].inbox.prefix: {message}")):
        InboxSource.model_validate({"prefix": prefix})


@pytest.mark.parametrize(
    "location",
    [
        {"prefix": "raw/imu/"},
        {"prefix": "raw/imu"},  # a plain key prefix, as documented
        {"prefix": "datasets-archive/"},
        {"prefix": "blobsx/"},
        {"prefix": "inboxes/"},
        {"bucket": "customer-data", "prefix": "datasets/otherns/"},  # not our bucket
        {"bucket": "customer-data", "prefix": "b"},
        {"bucket": "customer-data", "prefix": "a/../b/"},
    ],
)
def test_s3_prefixes_accepted(location: dict[str, str]) -> None:
    S3Location.model_validate(location)


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("blobs/", "must not overlap the operator's reserved roots"),
        ("blobs/sha256/ab/", "must not overlap the operator's reserved roots"),
        ("datasets/otherns/", "must not overlap the operator's reserved roots"),
        ("inbox/otherns/imu/", "must not overlap the operator's reserved roots"),
        ("models/", "must not overlap the operator's reserved roots"),
        ("runs/otherns/", "must not overlap the operator's reserved roots"),
        ("runs", "must not overlap the operator's reserved roots"),
        ("b", "must not overlap the operator's reserved roots"),
        ("dataset", "must not overlap the operator's reserved roots"),
        ("raw/../datasets/x/", "must not contain '..'"),
    ],
)
def test_s3_prefixes_in_the_operator_bucket_rejected(prefix: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(f"s3.prefix: without a bucket {message}")):
        S3Location.model_validate({"prefix": prefix})
