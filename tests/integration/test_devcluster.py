"""The local control plane behaves like a real cluster: Jobs, cascades, S3, Prometheus."""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio import Minio

from edgeops.devcluster import build, processes
from edgeops.devcluster.cluster import DevCluster
from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.integration

TRAINER_IMAGE = "ghcr.io/edgeops/trainer:dev"


def _job(
    name: str,
    command: list[str],
    backoff: int = 0,
    env: list[dict[str, Any]] | None = None,
    **pod_spec: Any,
) -> str:
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": backoff,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "main",
                                "image": TRAINER_IMAGE,
                                "command": command,
                                "env": env or [],
                            }
                        ],
                        **pod_spec,
                    }
                },
            },
        }
    )


def _job_condition(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    job = cluster.get("job", name, "-n", ns)
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return dict(cond)
    return None


def test_apiserver_is_ready(cluster: Cluster) -> None:
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    versions = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == versions["clientVersion"]["gitVersion"]
    assert versions["serverVersion"]["gitVersion"] == build.KUBERNETES_VERSION
    nodes = cluster.get("nodes")["items"]
    ready = [c for c in nodes[0]["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"


def test_namespace_is_created_and_deleted(cluster: Cluster) -> None:
    ns = cluster.namespace("nsdel")
    cluster.kubectl("create", "configmap", "x", "-n", ns, "--from-literal=a=b")
    cluster.kubectl("delete", "namespace", ns, "--wait=false")
    # The namespace controller empties and then removes it.
    wait_for(
        lambda: cluster.kubectl("get", "namespace", ns, check=False).returncode != 0,
        60,
        f"namespace {ns} to disappear",
    )


def test_job_with_secret_env_completes(cluster: Cluster) -> None:
    ns = cluster.namespace("job")
    cluster.kubectl("create", "secret", "generic", "creds", "-n", ns, "--from-literal=token=s3cr3t")
    code = (
        "import os, sys; print('token ok' if os.environ['TOKEN'] == 's3cr3t' else 'bad');"
        "sys.exit(0 if os.environ['TOKEN'] == 's3cr3t' and os.environ['POD_NS'] == "
        f"'{ns}' else 7)"
    )
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=_job("ok", ["python", "-c", code], env=env))
    cond = wait_for(lambda: _job_condition(cluster, ns, "ok"), 90, "job ok to finish")
    assert cond["type"] == "Complete", cond
    pods = cluster.get("pods", "-n", ns, "-l", "job-name=ok")["items"]
    assert len(pods) == 1
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    # `kubectl logs` goes through the apiserver to the local node's kubelet API.
    assert cluster.kubectl("logs", "-n", ns, "job/ok").stdout.strip() == "token ok"


def test_job_exiting_3_fails_after_backoff_limit(cluster: Cluster) -> None:
    ns = cluster.namespace("jobfail")
    manifest = _job("bad", ["python", "-c", "import sys; sys.exit(3)"], backoff=1)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    cond = wait_for(lambda: _job_condition(cluster, ns, "bad"), 120, "job bad to fail")
    assert cond["type"] == "Failed"
    assert cond["reason"] == "BackoffLimitExceeded"
    pods = cluster.get("pods", "-n", ns, "-l", "job-name=bad")["items"]
    assert len(pods) == 2  # the first try plus one retry
    codes = {p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods}
    assert codes == {3}


def test_volumes_workdir_and_envfrom(cluster: Cluster) -> None:
    ns = cluster.namespace("vol")
    cluster.kubectl("create", "secret", "generic", "files", "-n", ns, "--from-literal=key=k3y")
    cluster.kubectl("create", "configmap", "settings", "-n", ns, "--from-literal=MODE=fast")
    code = (
        "import os, pathlib, sys\n"
        "key = pathlib.Path('/etc/edgeops-test/secret/key').read_text()\n"
        "pathlib.Path('/scratch/out').write_text('x')\n"
        "ok = key == 'k3y' and os.environ['MODE'] == 'fast' and os.getcwd() == '/scratch'\n"
        "tok = pathlib.Path('/var/run/secrets/kubernetes.io/serviceaccount/token').read_text()\n"
        "ok = ok and tok.count('.') == 2\n"
        "print(key, os.environ.get('MODE'), os.getcwd(), ok)\n"
        "sys.exit(0 if ok else 9)\n"
    )
    job = json.loads(
        _job(
            "vols",
            ["python", "-c", code],
            volumes=[
                {"name": "secret", "secret": {"secretName": "files"}},
                {"name": "scratch", "emptyDir": {}},
            ],
        )
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["envFrom"] = [{"configMapRef": {"name": "settings"}}]
    container["workingDir"] = "/scratch"
    container["volumeMounts"] = [
        {"name": "secret", "mountPath": "/etc/edgeops-test/secret", "readOnly": True},
        {"name": "scratch", "mountPath": "/scratch"},
    ]
    # Wait for the default ServiceAccount (the token volume needs it).
    wait_for(lambda: cluster.get("serviceaccount", "default", "-n", ns), 30, "default SA")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))
    cond = wait_for(lambda: _job_condition(cluster, ns, "vols"), 90, "job vols to finish")
    log_files = list((cluster.dev.dir / "node" / "pods").glob(f"{ns}_vols-*/logs/main.log"))
    assert cond["type"] == "Complete", log_files[0].read_text() if log_files else cond
    # The bind mount was private to the pod: nothing leaked onto the host path.
    assert not Path("/scratch/out").exists()


def test_foreign_image_gets_clear_waiting_reason(cluster: Cluster) -> None:
    ns = cluster.namespace("foreign")
    cluster.kubectl("run", "nginx", "-n", ns, "--image=nginx:1.27", "--restart=Never")

    def waiting() -> dict[str, Any] | None:
        pod = cluster.get("pod", "nginx", "-n", ns)
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return statuses[0]["state"].get("waiting") if statuses else None

    state = wait_for(waiting, 30, "a waiting reason on the nginx pod")
    assert state["reason"] == "ImageNotRunnableLocally"
    assert "nginx:1.27" in state["message"]


def test_missing_secret_is_create_container_config_error(cluster: Cluster) -> None:
    ns = cluster.namespace("nosecret")
    env = [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "t"}}}]
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=_job("j", ["python", "-c", "1"], env=env))

    def waiting() -> dict[str, Any] | None:
        pods = cluster.get("pods", "-n", ns, "-l", "job-name=j").get("items") or []
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        return statuses[0]["state"].get("waiting") if statuses else None

    state = wait_for(waiting, 30, "a CreateContainerConfigError")
    assert state["reason"] == "CreateContainerConfigError"
    assert 'secret "absent" not found' in state["message"]


def test_deleting_owner_cascades(cluster: Cluster) -> None:
    ns = cluster.namespace("gc")
    owner = json.loads(
        cluster.kubectl("create", "configmap", "owner", "-n", ns, "-o", "json").stdout
    )
    child = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "child",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
        "stringData": {"a": "b"},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(child))
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sleeper"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "sleeper"}},
            "template": {
                "metadata": {"labels": {"app": "sleeper"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "s",
                            "image": TRAINER_IMAGE,
                            "command": ["python", "-c", "import time; time.sleep(600)"],
                        }
                    ],
                },
            },
        },
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(deploy))

    def running_pod() -> dict[str, Any] | None:
        pods = cluster.get("pods", "-n", ns, "-l", "app=sleeper").get("items") or []
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        return running[0] if running else None

    pod = wait_for(running_pod, 60, "the Deployment's pod to run")
    pid_files = list((cluster.dev.dir / "node" / "pods").glob(f"{ns}_*/pids/s.pid"))
    assert pid_files, "the node records the PID of the pod's process"
    pid, argv0 = pid_files[0].read_text().split("\n", 1)
    assert processes.alive(int(pid), argv0)

    cluster.kubectl("delete", "configmap", "owner", "-n", ns)
    cluster.kubectl("delete", "deployment", "sleeper", "-n", ns)
    wait_for(
        lambda: cluster.kubectl("get", "secret", "child", "-n", ns, check=False).returncode != 0,
        60,
        "the owned Secret to be garbage-collected",
    )
    wait_for(lambda: not cluster.get("replicasets", "-n", ns).get("items"), 60, "ReplicaSet gone")
    wait_for(
        lambda: (
            cluster.kubectl("get", "pod", pod["metadata"]["name"], "-n", ns, check=False).returncode
            != 0
        ),
        60,
        "the pod to be deleted",
    )
    wait_for(lambda: not processes.alive(int(pid), argv0), 30, "the pod's process to be killed")


def test_s3_bucket_round_trip(cluster: Cluster) -> None:
    env = cluster.env
    s3 = Minio(
        env["EDGEOPS_S3_ENDPOINT"].removeprefix("http://"),
        access_key=env["EDGEOPS_S3_ACCESS_KEY"],
        secret_key=env["EDGEOPS_S3_SECRET_KEY"],
        secure=False,
    )
    bucket = f"rt-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    payload = os.urandom(4096)
    import io

    s3.put_object(bucket, "a/b.bin", io.BytesIO(payload), len(payload))
    assert s3.get_object(bucket, "a/b.bin").read() == payload
    assert [o.object_name for o in s3.list_objects(bucket, recursive=True)] == ["a/b.bin"]


def test_prometheus_scrapes_the_operator(cluster: Cluster) -> None:
    url = cluster.endpoints["prometheus"] + "/api/v1/query"

    def operator_up() -> list[Any]:
        r = httpx.get(url, params={"query": "edgeops_operator_up"}, timeout=5)
        r.raise_for_status()
        result: list[Any] = r.json()["data"]["result"]
        return result

    result = wait_for(operator_up, 60, "Prometheus to scrape the operator's /metrics")
    assert float(result[0]["value"][1]) == 1.0
    health = httpx.get(cluster.endpoints["operator"] + "/healthz", timeout=5)
    assert health.status_code == 200


def test_the_gateway_runs_as_a_pod_from_the_chart(cluster: Cluster) -> None:
    pods = cluster.get("pods", "-n", "edgeops-system", "-l", "app.kubernetes.io/component=gateway")[
        "items"
    ]
    assert [p["status"]["phase"] for p in pods] == ["Running"]
    assert pods[0]["spec"]["serviceAccountName"] == "edgeops-gateway"
    url = cluster.endpoints["gateway"]
    assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    # Ready: its watch caches listed the fleet under its own ServiceAccount.
    assert httpx.get(url + "/readyz", timeout=5).json() == {"status": "ok"}
    paths = httpx.get(url + "/openapi.json", timeout=5).json()["paths"]
    assert "/v1/enroll" in paths and "/v1/devices/{namespace}/{name}/desired" in paths
    # Least privilege: Device status and token Secrets, nothing else written or listed.
    gateway = "--as=system:serviceaccount:edgeops-system:edgeops-gateway"

    def can(*args: str) -> bool:
        out = cluster.kubectl("auth", "can-i", gateway, *args, check=False)
        return out.stdout.strip() == "yes"

    # Its watch caches: list and watch the fleet's objects in every namespace.
    for kind in ("devices", "edgemodels", "fleetrollouts"):
        for verb in ("list", "watch"):
            assert can(verb, f"{kind}.edgeops.dev", "--all-namespaces"), (verb, kind)
    assert not can("watch", "secrets", "--all-namespaces")
    assert not can("list", "configmaps", "-n", "plant")
    assert can("patch", "devices.edgeops.dev", "--subresource=status", "-n", "plant")
    assert can("create", "devices.edgeops.dev", "-n", "plant")
    # Token use counts are a merge patch carrying the resourceVersion (compare-and-swap).
    assert can("patch", "secrets", "-n", "plant")
    assert not can("update", "secrets", "-n", "plant")
    assert not can("list", "secrets", "-n", "plant")
    assert not can("delete", "devices.edgeops.dev", "-n", "plant")
    assert not can("patch", "edgemodels.edgeops.dev", "-n", "plant")
    assert not can("create", "jobs.batch", "-n", "plant")


def test_status_reports_a_crash_and_up_restarts_it(cluster: Cluster) -> None:
    dev = cluster.dev
    comp = json.loads(dev.state_file.read_text())["components"]["prometheus"]
    processes.stop(int(comp["pid"]), comp["argv0"], timeout=5)
    prom = {s.name: s for s in dev.status()}["prometheus"]
    assert prom.pid == comp["pid"] and not prom.running
    assert any("prometheus" in line and "CRASHED" in line for line in dev.describe())
    # A CRD deleted by hand: up applies the bootstrap again (it skips it when all is there).
    crd = "customresourcedefinition/podmonitors.monitoring.coreos.com"
    dev.kubectl("delete", crd)
    messages: list[str] = []
    dev.up(with_operator=True, report=messages.append)
    assert any("CRDs (KServe, Prometheus Operator, EdgeOps) installed" in m for m in messages)
    assert dev.kubectl("get", crd, check=False).returncode == 0
    statuses = {s.name: s for s in dev.status()}
    assert statuses["prometheus"].ready and statuses["prometheus"].pid != comp["pid"]
    # Everything else kept its process: up is idempotent.
    assert (
        statuses["kube-apiserver"].pid
        == json.loads(dev.state_file.read_text())["components"]["kube-apiserver"]["pid"]
    )


def test_port_taken_before_start_is_replaced_then_down_leaves_no_orphan(tmp_path: Path) -> None:
    dev = DevCluster(name="orphans", home=tmp_path)
    taken = socket.socket()
    taken.bind(("127.0.0.1", processes.free_port()))
    taken.listen()
    # Another program holds the port this cluster's S3 server was given.
    state_ports = dev._ports()
    state_ports["s3"] = taken.getsockname()[1]
    dev.state_file.write_text(json.dumps({"ports": state_ports}))
    messages: list[str] = []
    try:
        try:
            dev.up(with_operator=False, report=messages.append)
        finally:
            taken.close()
        assert any("s3: a port was taken" in m for m in messages), messages
        assert dev.endpoints()["s3"] != f"http://127.0.0.1:{state_ports['s3']}"
        assert {s.name: s.ready for s in dev.status()}["s3"]
        secret = dev.kubectl("get", "secret", "edgeops-s3", "-n", "edgeops-system", "-o", "json")
        endpoint = json.loads(secret.stdout)["data"]["endpoint"]
        assert base64.b64decode(endpoint).decode() == dev.endpoints()["s3"]
        dev.kubectl(
            "run",
            "sleeper",
            "--image=ghcr.io/edgeops/trainer:dev",
            "--restart=Never",
            "--command",
            "--",
            "python",
            "-c",
            "import time; time.sleep(600)",
        )
        pid_glob = "node/pods/*/pids/*.pid"
        wait_for(lambda: list(dev.dir.glob(pid_glob)), 60, "the sleeper pod to start")
        pods = [f.read_text().split("\n", 1) for f in dev.dir.glob(pid_glob)]
        components = json.loads(dev.state_file.read_text())["components"]
    finally:
        dev.down(report=lambda m: None)
    for comp in components.values():
        assert not processes.alive(int(comp["pid"]), comp["argv0"])
    for pid, argv0 in pods:
        assert not processes.alive(int(pid), argv0)
    # No process anywhere still refers to this cluster's directory.
    leftovers = [
        p.name
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and str(tmp_path) in " ".join(processes.cmdline(int(p.name)))
    ]
    assert leftovers == []
