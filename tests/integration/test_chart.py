"""The Helm chart: lint and schema, rendering checked against the real apiserver's schemas,
least-privilege RBAC, and the chart's own operator and gateway pods doing their job on the
devcluster's local node (a Dataset versioned, a run trained and evaluated, a device
enrolled, `helm test` passing)."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edgeops import crdgen
from edgeops.devcluster import processes
from edgeops.devcluster.build import ensure_helm
from edgeops.devcluster.cluster import S3_SECRET, SYSTEM_NAMESPACE
from tests.conftest import Cluster, condition, wait_for
from tests.integration.gateway_client import Device, free_port, token
from tests.integration.test_name_taken import RESULTS_ONLY, _run

pytestmark = pytest.mark.integration
CHART = Path(__file__).resolve().parents[2] / "charts" / "edgeops"


def _run_helm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ensure_helm()), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _helm(cluster: Cluster, *args: str, timeout: float = 120) -> str:
    result = _run_helm("--kubeconfig", cluster.kubeconfig, *args, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_chart_crds_are_the_generated_ones() -> None:
    for name, text in crdgen.generate().items():
        assert (CHART / "files" / "crds" / name).read_text() == text
    # Not in Helm's crds/ directory: Helm installs that once and never upgrades it.
    assert not list(CHART.glob("crds/*.yaml"))


def test_lint_strict_is_clean() -> None:
    result = _run_helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize(
    ("values", "named"),
    [
        (["gateway.replicas=-1"], "at '/gateway/replicas': minimum: got -1, want 0"),
        (["s3.bucket=My_Bucket"], "at '/s3/bucket'"),
        (["gatway.replicas=2"], "additional properties 'gatway' not allowed"),
        (["image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["prometheus.url=prometheus:9090"], "at '/prometheus/url'"),
        (["gateway.service.port=http"], "at '/gateway/service/port'"),
        (["metrics.serviceMonitor.interval=30"], "at '/metrics/serviceMonitor/interval'"),
        (["gateway.ingress.hosts[0].paths[0].path=api"], "at '/gateway/ingress/hosts/0'"),
        (["watchNamespaces={team-a,Team_B}"], "at '/watchNamespaces/1'"),
    ],
)
def test_a_wrong_value_fails_naming_the_field(values: list[str], named: str) -> None:
    sets = [arg for value in values for arg in ("--set", value)]
    for command in (["lint", "--strict"], ["template", "x"]):
        result = _run_helm(*command, str(CHART), *sets)
        assert result.returncode != 0
        assert named in result.stdout + result.stderr, result.stdout + result.stderr


def test_crds_are_kept_templates_unless_disabled() -> None:
    def crds(*sets: str) -> list[dict[str, object]]:
        out = _run_helm("template", "x", str(CHART), *sets)
        assert out.returncode == 0, out.stderr
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        return [d for d in docs if d["kind"] == "CustomResourceDefinition"]

    rendered = {str(d["metadata"]["name"]): d for d in crds()}  # type: ignore[index]
    assert rendered.keys() == {n.removesuffix(".yaml") for n in crdgen.generate()}
    for name, text in crdgen.generate().items():
        crd = rendered[name.removesuffix(".yaml")]
        generated = yaml.safe_load(text)
        assert crd["spec"] == generated["spec"]
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}  # type: ignore[index]
    assert all("annotations" not in d["metadata"] for d in crds("--set", "crds.keep=false"))  # type: ignore[operator]
    assert crds("--set", "crds.install=false") == []


#: Every optional object on, with scheduling values set.
_EVERYTHING_ON = (
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "prometheusRule.enabled=true",
    "--set",
    "dashboard.enabled=true",
    "--set",
    "gateway.ingress.enabled=true",
    "--set",
    "gateway.ingress.hosts[0].host=gateway.example.com",
    "--set",
    "gateway.ingress.hosts[0].paths[0].path=/",
    "--set",
    "gateway.autoscaling.enabled=true",
    "--set",
    "gateway.podDisruptionBudget.enabled=true",
    "--set",
    "imagePullSecrets[0].name=regcred",
    "--set",
    "gateway.nodeSelector.edge/pool=gateways",
    "--set",
    "gateway.tolerations[0].key=dedicated",
    "--set",
    "gateway.tolerations[0].operator=Exists",
)


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
        # The devcluster's own (server-side applied) CRDs are not the release's.
        "--set",
        "crds.install=false",
        *_EVERYTHING_ON,
    )
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered) if d)
    # The operator's objects, the fleet gateway's, the optional ones and the test pods.
    assert kinds == sorted(
        2 * ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
        + 2 * ["ServiceMonitor"]
        + ["Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
        + ["PrometheusRule", "ConfigMap"]
        + ["Role", "RoleBinding"]  # the operator's own objects in the release namespace
        + 3 * ["Pod"]
    )
    # Every object, the ServiceMonitors against the Prometheus Operator's own CRD.
    out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    for monitor in ("check-operator", "check-gateway"):
        assert f"servicemonitor.monitoring.coreos.com/{monitor} created (server dry run)" in (
            out.stdout
        )
    for obj in ("ingress.networking.k8s.io", "horizontalpodautoscaler.autoscaling"):
        assert f"{obj}/check-gateway created (server dry run)" in out.stdout
    assert "poddisruptionbudget.policy/check-gateway created (server dry run)" in out.stdout
    # The alerts against the Prometheus Operator's CRD.
    assert "prometheusrule.monitoring.coreos.com/check-operator created (server dry run)" in (
        out.stdout
    )
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    gateway = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "check-gateway"
    )
    # The HPA owns the replica count.
    assert "replicas" not in gateway["spec"]
    pod = gateway["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"edge/pool": "gateways"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]


def test_pods_follow_the_restricted_pod_security_standard(cluster: Cluster) -> None:
    """The API server's own Pod Security admission, at level restricted, admits every pod."""
    ns = cluster.namespace("psa")
    cluster.kubectl(
        "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"
    )
    rendered = _helm(
        cluster, "template", "psa", str(CHART), "--namespace", ns, "--set", "crds.install=false"
    )
    pods = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in ("Deployment", "Pod")]
    assert len(pods) == 5
    out = cluster.kubectl(
        "apply", "--dry-run=server", "-n", ns, "-f", "-", input=yaml.safe_dump_all(pods),
        check=False,
    )  # fmt: skip
    assert out.returncode == 0 and "Warning" not in out.stderr, out.stderr


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
        "--set",
        "crds.install=false",
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
            # resource: plural[.group], with /status or /log for a subresource, /NAME else.
            base, _, rest = resource.partition("/")
            what = [base, f"--subresource={rest}"] if rest in ("status", "log") else [resource]
            result = cluster.kubectl(
                "auth", "can-i", verb, *what, "-n", namespace, "--as", user, check=False
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
            ("list", "pods"),
            ("patch", "servingruntimes.serving.kserve.io"),
            ("create", "servingruntimes.serving.kserve.io"),
            ("delete", "inferenceservices.serving.kserve.io"),
            ("create", "jobs.batch"),
            # Collection Jobs: deleted once recorded; the collector's report is its log.
            ("delete", "jobs.batch"),
            ("get", "pods/log"),
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
            # Verbs no controller uses (README.md "RBAC").
            ("delete", "configmaps"),
            ("update", "servingruntimes.serving.kserve.io"),
            ("create", "events.events.k8s.io"),
            ("list", "namespaces"),
        ]
        assert can("get", "pods/log", ns) and can("get", "secrets/edgeops-signing-key", ns)
        assert [a for a in allowed if not can(*a)] == []
        assert [d for d in denied if can(*d)] == []
    finally:
        _helm(cluster, "uninstall", "eo", "--namespace", ns)


@pytest.fixture
def session_operator_stopped(cluster: Cluster) -> Iterator[None]:
    """The session's own operator (a process) stopped, so that only the chart's operator
    reconciles; started again afterwards."""
    operator = json.loads(cluster.dev.state_file.read_text())["components"]["operator"]
    assert processes.stop(int(operator["pid"]), str(operator["argv0"]))
    try:
        yield
    finally:
        cluster.dev.up(with_operator=True, report=lambda _: None)


def test_the_charts_operator_and_gateway_do_the_job(
    cluster: Cluster, session_operator_stopped: None
) -> None:
    """`helm install` of the whole chart: its operator and gateway run as pods on the local
    node under the chart's ServiceAccounts, a Dataset gets a version through that operator
    (a collection Job), a TrainingRun's training and evaluation Jobs run under its RBAC, a
    device enrolls through that gateway, and `helm test` passes. Installed in the
    per-namespace mode (`watchNamespaces`, the narrower RBAC: the cluster-wide ClusterRole
    holds the same rules in every namespace, test_chart_rbac.py), with the Dataset, a
    TrainingRun (training and evaluation Jobs) and the device in a tenant namespace other
    than the release's."""
    ns = cluster.namespace("chart")
    tenant = cluster.namespace("tenant")
    # The S3 credentials Secret the chart's pods read, in the release namespace.
    secret = cluster.get("secret", S3_SECRET, "-n", SYSTEM_NAMESPACE)
    cluster.kubectl(
        "create", "secret", "generic", S3_SECRET, "-n", ns,
        *(f"--from-literal={k}={base64.b64decode(v).decode()}" for k, v in secret["data"].items()),
    )  # fmt: skip
    # Pods share the host network here: every port is a free one on 127.0.0.1.
    health, metrics, gateway_port = free_port(), free_port(), free_port()
    local = "http://127.0.0.1:{}"
    _helm(
        cluster,
        "install", "eo", str(CHART), "--namespace", ns, "--wait=false",
        "--set", "crds.install=false",
        "--set", "bindAddress=127.0.0.1",
        "--set", f"health.port={health}",
        "--set", f"metrics.port={metrics}",
        "--set", f"s3.endpoint={cluster.endpoints['s3']}",
        "--set", f"prometheus.url={cluster.endpoints['prometheus']}",
        "--set", "gateway.bindAddress=127.0.0.1",
        "--set", f"gateway.port={gateway_port}",
        "--set", f"tests.operatorHealthUrl={local.format(health)}/healthz",
        "--set", f"tests.operatorMetricsUrl={local.format(metrics)}/metrics",
        "--set", f"tests.gatewayUrl={local.format(gateway_port)}",
        "--set", f"watchNamespaces={{{tenant}}}",
    )  # fmt: skip
    try:

        def running() -> list[dict[str, Any]] | None:
            # Both pods, both Running (one Running while the other starts is not enough).
            items = cluster.get("pods", "-n", ns)["items"]
            ready = [p for p in items if p["status"].get("phase") == "Running"]
            return ready if len(items) == len(ready) == 2 else None

        pods = wait_for(running, 120, "the chart's operator and gateway pods to run")
        accounts = {
            p["metadata"]["labels"]["app.kubernetes.io/component"]: p["spec"]["serviceAccountName"]
            for p in pods
        }
        assert accounts == {"operator": "eo-operator", "gateway": "eo-gateway"}

        def answers(url: str) -> bool:
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(lambda: answers(local.format(health) + "/healthz"), 120, "the operator")
        wait_for(lambda: answers(local.format(gateway_port) + "/healthz"), 120, "the gateway")

        # The operator (the only one running): a Dataset gets a version.
        version = cluster.motions_dataset(tenant)
        assert int(version, 16) >= 0  # a content hash
        dataset = cluster.get("dataset", "motions", "-n", tenant)
        assert dataset["status"]["observedGeneration"] == dataset["metadata"]["generation"]
        # A TrainingRun, trained and evaluated under the chart's RBAC: its scoped Secret
        # (STS), ConfigMap and Job in the tenant namespace, the evaluator's Secret and Job
        # in the release namespace, both Jobs' pods followed and the evaluator's log read.
        # The trainer writes a results manifest without a model (no TensorFlow: seconds),
        # so the evaluation fails with the evaluator's own words, read from its pod log.
        run = json.loads(_run("chart-run"))
        run["spec"]["trainer"]["command"] = ["python", "-c", RESULTS_ONLY]
        cluster.kubectl("apply", "-n", tenant, "-f", "-", input=json.dumps(run))
        finished = wait_for(
            lambda: (
                (status := cluster.get("trainingrun", "chart-run", "-n", tenant).get("status"))
                and status.get("phase") in ("Succeeded", "Failed")
                and status
            ),
            180,
            "the run to finish under the chart's RBAC",
        )
        failed = condition(finished, "Succeeded")
        assert failed["reason"] == "EvaluationFailed", failed
        assert "the trainer exported no onnx artifact" in failed["message"], failed
        assert cluster.get("secret", "chart-run-train-s3", "-n", tenant)
        evaluations = cluster.get("jobs", "-n", ns, "-l", "edgeops.dev/job-role=evaluate")
        assert len(evaluations["items"]) == 1, evaluations
        operator_pod = next(p for p in pods if "operator" in p["metadata"]["name"])
        log = cluster.kubectl("logs", "-n", ns, operator_pod["metadata"]["name"]).stdout
        assert "forbidden" not in log.lower(), [
            line for line in log.splitlines() if "forbidden" in line.lower()
        ]

        # The gateway: a device enrolls with a bootstrap token and is Pending approval.
        with httpx.Client(base_url=local.format(gateway_port), timeout=30) as http:
            device = Device(http, tenant, "chart-dev")
            enrolled = device.enroll(token(cluster, tenant))
            # A namespace the release does not serve: neither caches nor RBAC there.
            elsewhere = Device(http, ns, "chart-dev").enroll("x" * 43)
        assert elsewhere.status_code == 404, elsewhere.text
        assert elsewhere.json()["reason"] == "NamespaceNotServed"
        assert enrolled.status_code == 201, enrolled.text
        assert enrolled.json()["enrollment"] == "Pending"
        assert cluster.get("device", "chart-dev", "-n", tenant)["spec"]["approval"] == "Pending"

        # `helm test`: the chart's hook pods find both answering.
        out = _helm(cluster, "test", "eo", "--namespace", ns, "--timeout", "3m", timeout=240)
        for check in ("operator-health", "operator-metrics", "gateway-health"):
            assert f"eo-test-{check}" in out
        assert out.count("Phase:          Succeeded") == 3, out
    finally:
        _helm(cluster, "uninstall", "eo", "--namespace", ns)
