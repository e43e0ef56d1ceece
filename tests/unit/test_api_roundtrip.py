"""Every example object parses into the API models and serialises back unchanged, so the
models neither drop nor invent fields a user wrote (or the operator reports)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeops.api import API_VERSION, KINDS, KINDS_BY_NAME

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
STATUS = EXAMPLES / "sensor-fleet" / "status"
#: Argo CD and Flux objects that deploy the examples (tests/integration/test_gitops.py).
GITOPS = EXAMPLES / "gitops"


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings, as the API server returns them."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_objects(paths: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    objects = []
    for path in paths:
        for doc in yaml.load_all(path.read_text(), Loader=_Loader):
            if doc:
                objects.append((f"{path.relative_to(ROOT)}:{doc['metadata']['name']}", doc))
    return objects


SPECS = load_objects(
    sorted(p for p in EXAMPLES.rglob("*.yaml") if p.parent != STATUS and GITOPS not in p.parents)
)
STATUSES = load_objects(sorted(STATUS.glob("*.yaml")))


def dump(model: Any) -> dict[str, Any]:
    result: dict[str, Any] = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return result


@pytest.mark.parametrize(("where", "obj"), SPECS, ids=[w for w, _ in SPECS])
def test_example_spec_roundtrips(where: str, obj: dict[str, Any]) -> None:
    assert obj["apiVersion"] == API_VERSION
    kind = KINDS_BY_NAME[obj["kind"]]
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}, "examples carry no status"
    assert "namespace" not in obj["metadata"], "examples are applied with -n"
    assert len(obj["metadata"]["name"]) <= kind.name_max_length
    assert dump(kind.spec.model_validate(obj["spec"])) == obj["spec"]


@pytest.mark.parametrize(("where", "obj"), STATUSES, ids=[w for w, _ in STATUSES])
def test_example_status_roundtrips(where: str, obj: dict[str, Any]) -> None:
    kind = KINDS_BY_NAME[obj["kind"]]
    assert dump(kind.status.model_validate(obj["status"])) == obj["status"]


def test_examples_cover_every_kind() -> None:
    every = {k.kind for k in KINDS}
    assert {obj["kind"] for _, obj in SPECS} == every
    assert {obj["kind"] for _, obj in STATUSES} == every


def test_status_samples_belong_to_example_objects() -> None:
    names = {(obj["kind"], obj["metadata"]["name"]) for _, obj in SPECS}
    for where, obj in STATUSES:
        assert (obj["kind"], obj["metadata"]["name"]) in names, where


def test_sensor_fleet_shape() -> None:
    """The use case the README describes: 3 devices (linux and mcu), a 10/50/100 rollout."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, obj in SPECS:
        by_kind.setdefault(obj["kind"], []).append(obj)
    devices = by_kind["Device"]
    assert len(devices) == 3
    assert {d["spec"]["targetType"] for d in devices} == {"linux", "mcu"}
    (rollout,) = by_kind["FleetRollout"]
    assert [s["percent"] for s in rollout["spec"]["steps"]] == [10, 50, 100]
    (model,) = by_kind["EdgeModel"]
    assert {(t["targetType"], t["format"]) for t in model["spec"]["targets"]} == {
        ("linux", "onnx"),
        ("mcu", "tflm"),
    }
    assert model["spec"]["promotion"]["mode"] == "Auto"
    selector = rollout["spec"]["selector"]["matchLabels"]
    assert all(
        all(d["metadata"]["labels"].get(k) == v for k, v in selector.items()) for d in devices
    )
