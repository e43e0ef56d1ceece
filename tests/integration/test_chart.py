"""The Helm chart installs into the real apiserver and grants least privilege."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from edgeops.devcluster.build import ensure_helm
from tests.conftest import Cluster

pytestmark = pytest.mark.integration
CHART = Path(__file__).resolve().parents[2] / "charts" / "edgeops"


def _helm(cluster: Cluster, *args: str) -> str:
    result = subprocess.run(
        [str(ensure_helm()), "--kubeconfig", cluster.kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_chart_crds_are_the_generated_ones() -> None:
    for crd in (CHART.parent.parent / "crds").glob("*.yaml"):
        assert (CHART / "crds" / crd.name).read_text() == crd.read_text()


def test_rendered_chart_validates_against_the_real_schemas(cluster: Cluster) -> None:
    rendered = _helm(
        cluster,
        "template",
        # Not "edgeops": the devcluster runs that release's gateway in edgeops-system, and a
        # dry run would be merged into its live objects.
        "check",
        str(CHART),
        "--namespace",
        "edgeops-system",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    )
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered) if d)
    # The operator's objects and the fleet gateway's.
    assert kinds == sorted(
        2 * ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
        + 2 * ["ServiceMonitor"]
    )
    # The ServiceMonitor is checked against the Prometheus Operator's own CRD.
    out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    for monitor in ("check-operator", "check-gateway"):
        assert f"servicemonitor.monitoring.coreos.com/{monitor} created (server dry run)" in (
            out.stdout
        )


def test_installed_service_account_has_least_privilege(cluster: Cluster) -> None:
    ns = cluster.namespace("helm")
    # replicas=0: the devcluster's own operator and gateway already run; only RBAC is under
    # test (the gateway's in test_devcluster).
    _helm(
        cluster,
        "install",
        "eo",
        str(CHART),
        "--namespace",
        ns,
        "--skip-crds",
        "--set",
        "replicas=0",
        "--set",
        "gateway.replicas=0",
        "--wait=false",
    )
    try:
        deploy = json.loads(
            cluster.kubectl("get", "deploy", "eo-operator", "-n", ns, "-o", "json").stdout
        )
        assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "eo-operator"
        user = f"system:serviceaccount:{ns}:eo-operator"

        def can(verb: str, resource: str, namespace: str = "default") -> bool:
            result = cluster.kubectl(
                "auth", "can-i", verb, resource, "-n", namespace, "--as", user, check=False
            )
            return result.stdout.strip() == "yes"

        env = deploy["spec"]["template"]["spec"]["containers"][0]["env"]
        own_namespace = next(e for e in env if e["name"] == "EDGEOPS_NAMESPACE")
        assert own_namespace["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        # Every kind of call the operator makes (k8s/ and controllers/) is allowed ...
        allowed = [
            ("patch", "trainingruns.edgeops.dev/status"),
            ("patch", "edgemodels.edgeops.dev/status"),
            ("create", "trainingruns.edgeops.dev"),
            ("get", "secrets"),
            ("create", "secrets"),
            ("patch", "secrets"),
            ("create", "configmaps"),
            ("patch", "configmaps"),
            ("create", "serviceaccounts"),
            ("patch", "serviceaccounts"),
            ("delete", "jobs.batch"),
            ("list", "pods"),
            ("patch", "servingruntimes.serving.kserve.io"),
            ("create", "servingruntimes.serving.kserve.io"),
            ("delete", "inferenceservices.serving.kserve.io"),
            ("create", "jobs.batch"),
            ("watch", "datasets.edgeops.dev"),
            ("create", "events"),
            ("create", "inferenceservices.serving.kserve.io"),
            ("create", "fleetrollouts.edgeops.dev"),
        ]
        # ... and nothing beyond them.
        denied = [
            ("create", "namespaces"),
            ("list", "secrets"),
            ("delete", "namespaces"),
            ("update", "datasets.edgeops.dev"),
            ("create", "pods"),
            ("delete", "secrets"),
            ("create", "clusterroles"),
        ]
        assert [a for a in allowed if not can(*a)] == []
        assert [d for d in denied if can(*d)] == []
    finally:
        _helm(cluster, "uninstall", "eo", "--namespace", ns)
