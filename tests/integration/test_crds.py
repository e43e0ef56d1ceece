"""The generated CRDs against a real API server: installed, explained, the examples apply,
the status samples are accepted, and every object of the invalid corpus is rejected with a
message that names the field."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeops.api import CATEGORY, KINDS, KINDS_BY_NAME
from tests.conftest import Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "sensor-fleet"
CORPUS = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


@pytest.fixture(scope="module")
def fleet_ns(cluster: Cluster) -> Iterator[str]:
    """A namespace holding the sensor-fleet example."""
    name = f"crds-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("apply", "-n", name, "-f", str(FLEET))
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _contains(actual: Any, expected: Any) -> bool:
    """expected is a deep subset of actual (maps may hold more keys; lists match exactly)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and _contains(actual[k], v) for k, v in expected.items()
        )
    return bool(actual == expected)


def test_crds_are_established(cluster: Cluster) -> None:
    for kind in KINDS:
        crd = _json(cluster, "get", "crd", kind.crd_name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", kind.crd_name
        assert conditions.get("NamesAccepted") == "True", kind.crd_name
        assert crd["status"]["acceptedNames"]["shortNames"] == list(kind.short_names)
        assert crd["status"]["acceptedNames"]["categories"] == [CATEGORY]


@pytest.mark.parametrize("kind", KINDS, ids=[k.kind for k in KINDS])
def test_kubectl_explain_shows_descriptions(cluster: Cluster, kind: Any) -> None:
    out = _flat(cluster.kubectl("explain", f"{kind.plural}.spec").stdout)
    assert _flat(kind.spec.__doc__ or "") in out
    for name, field in kind.spec.model_fields.items():
        assert (field.alias or name) in out
        assert _flat(field.description or "") in out, f"{kind.kind}.spec.{name}"
    status = _flat(cluster.kubectl("explain", f"{kind.plural}.status.conditions").stdout)
    assert "lastTransitionTime" in status and "CamelCase" in status


def test_examples_are_listed_with_columns(cluster: Cluster, fleet_ns: str) -> None:
    names = {
        (doc["kind"], doc["metadata"]["name"])
        for path in sorted(FLEET.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    }
    listed = cluster.kubectl("get", CATEGORY, "-n", fleet_ns).stdout
    for kind, name in names:
        assert f"{KINDS_BY_NAME[kind].singular}.edgeops.dev/{name}" in listed
    headers = [line.split() for line in listed.splitlines() if line.startswith("NAME")]
    assert ["NAME", "READY", "PHASE", "DATASET", "AGE"] in headers  # TrainingRun
    assert ["NAME", "READY", "CURRENT", "CANDIDATE", "AGE"] in headers  # EdgeModel
    assert ["NAME", "READY", "PHASE", "MODEL", "VERSION", "PERCENT", "AGE"] in headers
    wide = cluster.kubectl("get", "devices.edgeops.dev", "-n", fleet_ns, "-o", "wide").stdout
    assert wide.split()[:11] == [
        "NAME", "READY", "ENROLLMENT", "TYPE", "MODEL", "VERSION", "HEALTH", "LASTSEEN",
        "HARDWARE", "SITE", "AGENT",
    ]  # fmt: skip
    # Children the operator creates meanwhile (the model's first TrainingRun) carry
    # managed-by=edgeops; the short names must list exactly the example's own objects.
    short = cluster.kubectl(
        "get", "eds,etr,edm,efr,edev", "-n", fleet_ns, "-o", "name",
        "-l", "app.kubernetes.io/managed-by!=edgeops",
    ).stdout  # fmt: skip
    assert len(short.split()) == len(names)


@pytest.mark.parametrize("kind", KINDS, ids=[k.kind for k in KINDS])
def test_status_samples_are_accepted(cluster: Cluster, fleet_ns: str, kind: Any) -> None:
    sample = yaml.safe_load((FLEET / "status" / f"{kind.singular}.yaml").read_text())
    patched = _json(
        cluster,
        "patch",
        f"{kind.plural}.edgeops.dev",
        sample["metadata"]["name"],
        "-n",
        fleet_ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": sample["status"]}),
    )
    # Nothing pruned: every field the operator would write is in the schema.
    assert _contains(patched["status"], sample["status"])


def test_server_applies_defaults(cluster: Cluster, fleet_ns: str) -> None:
    minimal = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "defaults"},
        "spec": {
            "sources": [{"builtin": {"name": "digits"}}],
            "governance": {"classification": "public"},
            "split": {},
        },
    }
    created = json.loads(
        cluster.kubectl(
            "create", "-n", fleet_ns, "--dry-run=server", "-o", "json", "-f", "-",
            input=json.dumps(minimal),
        ).stdout
    )  # fmt: skip
    spec = created["spec"]
    assert spec["split"] == {"train": 0.8, "validation": 0.1, "test": 0.1}
    assert (spec["format"], spec["historyLimit"]) == ("csv", 10)


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_invalid_object_is_rejected(cluster: Cluster, fleet_ns: str, path: Path) -> None:
    text = path.read_text()
    expect = text.splitlines()[0].removeprefix("# expect: ").strip()
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", fleet_ns, "-f", "-", input=text, check=False
    )
    assert result.returncode != 0, f"{path.name} was accepted"
    assert expect in result.stderr, f"{path.name}: {result.stderr.strip()}"


def test_trainingrun_spec_is_immutable(cluster: Cluster, fleet_ns: str) -> None:
    run = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "immutable"},
        "spec": {"datasetRef": {"name": "basic-motions"}, "exports": ["onnx"]},
    }
    cluster.kubectl("create", "-n", fleet_ns, "-f", "-", input=json.dumps(run))
    for patch in (
        {"spec": {"backoffLimit": 5}},
        {"spec": {"exports": ["onnx", "tflite"]}},
        {"spec": {"trainer": {"config": {"layers": 3}}}},
    ):
        result = cluster.kubectl(
            "patch", "trainingrun", "immutable", "-n", fleet_ns, "--type=merge",
            "-p", json.dumps(patch), check=False,
        )  # fmt: skip
        assert result.returncode != 0, patch
        assert "spec: TrainingRun spec is immutable" in result.stderr
    # metadata stays editable (labels, annotations, finalizers)
    cluster.kubectl("label", "trainingrun", "immutable", "-n", fleet_ns, "edgeops.dev/note=kept")


def test_fleetrollout_target_is_immutable(cluster: Cluster, fleet_ns: str) -> None:
    for patch, message in (
        ({"spec": {"version": 2}}, "spec.version: immutable"),
        ({"spec": {"modelRef": {"name": "other"}}}, "spec.modelRef: immutable"),
    ):
        result = cluster.kubectl(
            "patch", "fleetrollout", "motion-classifier-v1", "-n", fleet_ns, "--type=merge",
            "-p", json.dumps(patch), check=False,
        )  # fmt: skip
        assert result.returncode != 0 and message in result.stderr, result.stderr
    # steering fields stay editable
    cluster.kubectl(
        "patch", "fleetrollout", "motion-classifier-v1", "-n", fleet_ns, "--type=merge",
        "-p", json.dumps({"spec": {"paused": True, "approvedStep": 1}}),
    )  # fmt: skip


def test_admission_warns_about_likely_mistakes_and_admits_them(
    cluster: Cluster, fleet_ns: str
) -> None:
    """The operator's admission webhook answers warnings kubectl prints (RFC 7234 Warning
    headers), and the object is admitted."""
    rollout = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "FleetRollout",
        "metadata": {"name": "all-at-once"},
        "spec": {"modelRef": {"name": "m"}, "version": 1, "steps": [{"percent": 100}]},
    }
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", fleet_ns, "-f", "-", input=json.dumps(rollout)
    )
    assert "Warning: spec.steps[0]: 100 % at once without analysis" in result.stderr
    assert "created (server dry run)" in result.stdout
    dataset = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "never"},
        "spec": {"sources": [{"builtin": {"name": "digits"}}],
                 "governance": {"classification": "public"},
                 "collection": {"schedule": "0 0 31 2 *"}},
    }  # fmt: skip
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", fleet_ns, "-f", "-", input=json.dumps(dataset)
    )
    assert (
        "Warning: spec.collection.schedule: '0 0 31 2 *' never fires: day-of-month 31 never "
        "occurs in Feb" in result.stderr
    )
    assert "created (server dry run)" in result.stdout
