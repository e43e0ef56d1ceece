"""The generated CRDs are structural, complete, deterministic and committed."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, Field

from edgeops import crdgen
from edgeops.api import CATEGORY, GROUP, KINDS, VERSION
from edgeops.crdgen import SchemaError, structural

ROOT = Path(__file__).resolve().parents[2]
CRDS = {kind.kind: crdgen.crd(kind) for kind in KINDS}

# Short names of built-in kinds (kubectl api-resources on a plain cluster).
BUILTIN_SHORT_NAMES = {
    "cm", "cs", "csr", "crd", "crds", "deploy", "ds", "ep", "ev", "hpa", "ing", "limits",
    "netpol", "no", "ns", "pc", "pdb", "po", "pv", "pvc", "quota", "rc", "rs", "sa", "sc",
    "sts", "svc",
}  # fmt: skip
FORBIDDEN_KEYS = {"$ref", "$defs", "title", "const", "uniqueItems", "allOf", "oneOf", "not"}


def schema_of(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def structural_problems(node: dict[str, Any], path: str = "") -> list[str]:
    """What the API server's structural-schema check (plus our own conventions) objects to."""
    problems = [f"{path}: {key} not allowed" for key in FORBIDDEN_KEYS & node.keys()]
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    free_form = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "anyOf" in node:
        if not int_or_string or node["anyOf"] != [{"type": "integer"}, {"type": "string"}]:
            problems.append(f"{path}: anyOf is only allowed for int-or-string")
    elif not int_or_string and node.get("type") not in {
        "object", "array", "string", "integer", "number", "boolean",
    }:  # fmt: skip
        problems.append(f"{path}: missing or invalid type {node.get('type')!r}")
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        problems.append(f"{path}: exclusiveMinimum must be boolean in OpenAPI v3")
    if node.get("type") == "object":
        props, extra = node.get("properties"), node.get("additionalProperties")
        if props is not None and extra is not None:
            problems.append(f"{path}: properties and additionalProperties are exclusive")
        if isinstance(extra, bool):
            problems.append(f"{path}: additionalProperties must be a schema")
        if props is None and extra is None and not free_form and path != ".metadata":
            problems.append(f"{path}: object without properties or additionalProperties")
        for name, sub in (props or {}).items():
            if "description" not in sub and f"{path}.{name}" != ".metadata":
                problems.append(f"{path}.{name}: no description (kubectl explain)")
            problems += structural_problems(sub, f"{path}.{name}")
        for name in node.get("required", []):
            if name not in (props or {}):
                problems.append(f"{path}: required {name} is not a property")
        if isinstance(extra, dict):
            problems += structural_problems(extra, f"{path}.*")
    if node.get("type") == "array":
        if "maxItems" not in node:
            problems.append(f"{path}: arrays need maxItems (CEL cost budget)")
        items = node.get("items")
        if not isinstance(items, dict):
            problems.append(f"{path}: array without items")
        else:
            keys = node.get("x-kubernetes-list-map-keys", [])
            missing = set(keys) - set(items.get("required", []))
            if missing:
                problems.append(f"{path}: list-map keys {missing} must be required")
            problems += structural_problems(items, f"{path}[]")
    unbounded = node.get("type") == "string" and not {"enum", "maxLength", "format"} & node.keys()
    if unbounded and path not in (".apiVersion", ".kind"):
        problems.append(f"{path}: strings need maxLength (CEL cost budget)")
    return problems


def cel_rules(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found += [(path, rule) for rule in node.get("x-kubernetes-validations", [])]
        for key, sub in node.items():
            found += cel_rules(sub, f"{path}.{key}")
    elif isinstance(node, list):
        for sub in node:
            found += cel_rules(sub, path)
    return found


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural(kind: str) -> None:
    assert structural_problems(schema_of(kind)) == []


def test_checker_catches_problems() -> None:
    """The checker above is not vacuous."""
    bad = {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "x"},
            "b": {"type": "array", "items": {"$ref": "#/x", "type": "string"}},
            "c": {"type": "object", "description": "c"},
        },
    }
    problems = structural_problems(bad)
    assert any("anyOf" in p for p in problems)
    assert any("$ref" in p for p in problems)
    assert any(".b: no description" in p for p in problems)
    assert any("maxItems" in p for p in problems)
    assert any(".c: object without" in p for p in problems)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_cel_rules_name_fields(kind: str) -> None:
    rules = cel_rules(schema_of(kind))
    for where, rule in rules:
        assert set(rule) <= {"rule", "message", "fieldPath"}, where
        head = rule["message"].split(":", 1)[0]
        assert head and " " not in head, f"{where}: message must start with a field: {rule}"


def test_expected_cel_rules_exist() -> None:
    messages = {r["message"] for kind in CRDS for _, r in cel_rules(schema_of(kind))}
    for expected in [
        "spec.steps: percent values must not decrease, and steps with the same percent must "
        "set a selector (at most one of them may not)",
        "steps[].percent: 0 needs a selector (the step would target no device)",
        "spec.steps: the last step must have percent 100",
        "steps[].pause: set exactly one of duration or manual",
        "spec: TrainingRun spec is immutable; create a new TrainingRun instead",
        "targets[].format: mcu targets must use format tflm",
        "spec.promotion.rolloutTemplate: required when mode is Auto",
        "spec.serving: minReplicas must not exceed maxReplicas",
        "spec.split: train + validation + test must sum to 1",
        "spec.governance.legalBasis: required when classification is personal",
        "sources[]: set exactly one of s3, http, inbox or builtin",
    ]:
        assert expected in messages


def test_immutability_rule_is_on_trainingrun_spec_only() -> None:
    spec = schema_of("TrainingRun")["properties"]["spec"]
    assert {"rule": "self == oldSelf"}.items() <= spec["x-kubernetes-validations"][0].items()
    training = schema_of("EdgeModel")["properties"]["spec"]["properties"]["training"]
    assert "x-kubernetes-validations" not in training


def test_free_form_and_int_or_string() -> None:
    trainer = schema_of("TrainingRun")["properties"]["spec"]["properties"]["trainer"]
    assert trainer["properties"]["config"]["x-kubernetes-preserve-unknown-fields"] is True
    cpu = trainer["properties"]["resources"]["properties"]["limits"]["additionalProperties"]
    assert cpu["x-kubernetes-int-or-string"] is True


def test_bounds_defaults_and_enums_survive() -> None:
    spec = schema_of("FleetRollout")["properties"]["spec"]
    percent = spec["properties"]["steps"]["items"]["properties"]["percent"]
    assert (percent["minimum"], percent["maximum"]) == (0, 100)
    assert spec["properties"]["paused"]["default"] is False
    assert spec["required"] == ["steps", "modelRef", "version"]
    rate = schema_of("TrainingRun")["properties"]["spec"]["properties"]["trainer"]["properties"]
    lr = rate["hyperparameters"]["properties"]["learningRate"]
    assert (lr["minimum"], lr["exclusiveMinimum"]) == (0, True)
    fmt = schema_of("Dataset")["properties"]["spec"]["properties"]["format"]
    assert fmt["enum"] == ["csv", "jsonl", "parquet", "npz"] and fmt["default"] == "csv"


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_names_columns_and_subresources(kind: str) -> None:
    crd = CRDS[kind]
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{names['plural']}.{GROUP}"
    assert crd["spec"]["scope"] == "Namespaced"
    assert names["categories"] == [CATEGORY]
    assert names["shortNames"] and not set(names["shortNames"]) & BUILTIN_SHORT_NAMES
    version = crd["spec"]["versions"][0]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
        "description": "Time since creation",
    }
    assert {"Phase", "Latest", "Current", "Version"} & {
        n for n, c in columns.items() if c.get("priority", 0) == 0
    }
    assert any(c.get("priority") == 1 for c in columns.values()), "details for -o wide"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions"} <= status.keys()
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_short_names_are_unique() -> None:
    every = [s for crd in CRDS.values() for s in crd["spec"]["names"]["shortNames"]]
    assert len(every) == len(set(every))
    assert sorted(every) == ["edev", "edm", "eds", "efr", "etr"]


def test_committed_files_are_current() -> None:
    problems = crdgen.check(ROOT)
    assert problems == [], "run `python -m edgeops.crdgen`:\n" + "".join(problems)
    for name in crdgen.generate():
        assert (ROOT / "crds" / name).read_bytes() == (
            ROOT / "charts" / "edgeops" / "files" / "crds" / name
        ).read_bytes()


def test_generation_is_deterministic() -> None:
    assert crdgen.generate() == crdgen.generate()
    for text in crdgen.generate().values():
        assert text.startswith(crdgen.HEADER)
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"


def test_check_reports_stale_and_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crdgen.main(["--root", str(tmp_path), "--check"]) == 1  # nothing generated yet
    assert crdgen.main(["--root", str(tmp_path)]) == 0
    assert crdgen.main(["--root", str(tmp_path), "--check"]) == 0
    edited = tmp_path / "charts" / "edgeops" / "files" / "crds" / "devices.edgeops.dev.yaml"
    edited.write_text(edited.read_text().replace("edev", "dev"))
    (tmp_path / "crds" / "old.edgeops.dev.yaml").write_text("{}\n")
    capsys.readouterr()
    assert crdgen.main(["--root", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "\n-    - dev\n" in err and "\n+    - edev\n" in err
    assert "crds/old.edgeops.dev.yaml: not generated" in err
    assert crdgen.main(["--root", str(tmp_path)]) == 0
    assert not (tmp_path / "crds" / "old.edgeops.dev.yaml").exists()


def test_check_refuses_crds_in_the_charts_crds_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Helm would install a file there once, beside the templated copy, and never upgrade it.
    assert crdgen.main(["--root", str(tmp_path)]) == 0
    retired = tmp_path / "charts" / "edgeops" / "crds"
    retired.mkdir(parents=True)
    (retired / "devices.edgeops.dev.yaml").write_text("{}\n")
    assert crdgen.main(["--root", str(tmp_path), "--check"]) == 1
    assert "charts/edgeops/crds/devices.edgeops.dev.yaml: retired location" in (
        capsys.readouterr().err
    )


class _Union(BaseModel):
    """u"""

    value: int | list[str] = Field(description="v")


class _Set(BaseModel):
    """s"""

    value: set[str] = Field(description="v")


class _Tree(BaseModel):
    """t"""

    children: list[_Tree] = Field(description="c")


class _Choice(BaseModel):
    """c"""

    only: Literal["x"] = Field("x", description="o")
    maybe: int | None = Field(None, gt=0, description="m")


@pytest.mark.parametrize("model", [_Union, _Set, _Tree])
def test_unstructural_models_are_refused(model: type[BaseModel]) -> None:
    with pytest.raises(SchemaError):
        structural(model.model_json_schema())


def test_optional_and_const_translation() -> None:
    props = structural(_Choice.model_json_schema())["properties"]
    assert props["only"] == {"default": "x", "description": "o", "enum": ["x"], "type": "string"}
    assert props["maybe"] == {
        "description": "m",
        "exclusiveMinimum": True,
        "minimum": 0,
        "type": "integer",
    }


def test_imports_are_layered() -> None:
    """api imports only pydantic and the stdlib; crdgen only the api, yaml and the stdlib."""
    allowed = {
        "operator/edgeops/crdgen.py": {"edgeops", "yaml"},
        **{
            str(p.relative_to(ROOT)): {"pydantic"}
            for p in (ROOT / "operator" / "edgeops" / "api").glob("*.py")
        },
    }
    for file, extra in allowed.items():
        tree = ast.parse((ROOT / file).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
                if node.module.startswith("edgeops") and not node.module.startswith("edgeops.api"):
                    pytest.fail(f"{file} imports {node.module}")
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in extra, f"{file} imports {name}"
