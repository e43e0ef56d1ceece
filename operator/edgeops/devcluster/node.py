"""The devcluster's node: binds pending pods to itself and runs their containers as processes.

It plays the kubelet's part for EdgeOps's own images (see `podspec.IMAGE_ENTRYPOINTS`):
volumes are materialised under the node's state directory and bind-mounted at their
`mountPath` inside a private mount namespace (`unshare`), env is built like the kubelet
builds it, pod phase and container states go back through the pods/status subresource.
Pods it cannot run get a Waiting reason that says why.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from edgeops.devcluster import podspec, processes

log = logging.getLogger("edgeops.devcluster.node")
Obj = dict[str, Any]
MAX_GRACE_SECONDS = 10
RESTART_BACKOFF_SECONDS = (1, 2, 5, 10, 20)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def kill_leftover_pods(state_dir: Path) -> int:
    """Kills processes recorded in pid files whose node is gone. Returns how many were alive."""
    killed = 0
    for pid_file in state_dir.glob("pods/*/pids/*.pid"):
        try:
            pid_text, argv0 = pid_file.read_text().split("\n", 1)
            if processes.stop(int(pid_text), argv0.strip(), timeout=5):
                killed += 1
        except (OSError, ValueError):
            continue
        pid_file.unlink(missing_ok=True)
    return killed


class PodRunner(threading.Thread):
    """Runs one pod to completion (or until deleted), reporting status as it goes."""

    def __init__(self, node: LocalNode, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}-{meta['name']}", daemon=True)
        self.node = node
        self.pod = pod
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.dir = node.state_dir / "pods" / f"{self.namespace}_{self.pod_name}_{self.uid[:8]}"
        self.stopping = threading.Event()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()
        self.start_time = _now()

    # ----- status --------------------------------------------------------------------------

    def _patch_status(self, status: Obj) -> None:
        try:
            self.node.core.patch_namespaced_pod_status(
                self.pod_name, self.namespace, {"status": status}
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("status patch for %s/%s failed: %s", self.namespace, self.pod_name, exc)

    def _conditions(self, ready: bool, initialized: bool = True) -> list[Obj]:
        now = _now()

        def cond(t: str, ok: bool) -> Obj:
            return {"type": t, "status": "True" if ok else "False", "lastTransitionTime": now}

        return [
            cond("PodScheduled", True),
            cond("Initialized", initialized),
            cond("ContainersReady", ready),
            cond("Ready", ready),
        ]

    def _waiting(self, reason: str, message: str) -> None:
        log.info("pod %s/%s waiting: %s: %s", self.namespace, self.pod_name, reason, message)
        containers = self.pod["spec"].get("containers") or []
        self._patch_status(
            {
                "phase": "Pending",
                "hostIP": "127.0.0.1",
                "conditions": self._conditions(False, initialized=False),
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "image": c.get("image", ""),
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "started": False,
                        "state": {"waiting": {"reason": reason, "message": message}},
                    }
                    for c in containers
                ],
            }
        )

    # ----- preparation ---------------------------------------------------------------------

    def _token(self, source: Mapping[str, Any]) -> str:
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        body = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[source["audience"]] if source.get("audience") else [],
                expiration_seconds=int(source.get("expirationSeconds", 3607)),
                bound_object_ref=client.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name=self.pod_name, uid=self.uid
                ),
            )
        )
        result = self.node.core.create_namespaced_service_account_token(sa, self.namespace, body)
        return str(result.status.token)

    def _prepare_volumes(self) -> dict[str, Path]:
        volumes: dict[str, Path] = {}
        for volume in self.pod["spec"].get("volumes") or []:
            plan = podspec.plan_volume(self.pod, volume, self.node.lookup, self._token)
            target = self.dir / "volumes" / volume["name"]
            target.mkdir(parents=True, exist_ok=True)
            for f in plan.files:
                path = target / f.path
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(f.content)
                path.chmod(f.mode)
            volumes[volume["name"]] = target
        return volumes

    def _launch(
        self, container: Obj, volumes: dict[str, Path], attempt: int
    ) -> subprocess.Popen[bytes]:
        env = podspec.container_env(self.pod, container, self.node.lookup)
        argv = podspec.resolve_argv(container, env)
        base = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.dir / "home"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "HOSTNAME": self.pod_name,
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.node.apiserver_port),
        }
        # PYTHONPATH: pods run the edgeops the node runs (a worktree's, in development),
        # not whatever the interpreter's environment has installed.
        for passthrough in (
            "OPENBLAS_CORETYPE",
            "OPENBLAS_L2_SIZE",
            "XDG_CACHE_HOME",
            "TMPDIR",
            "PYTHONPATH",
        ):
            if passthrough in os.environ:
                base[passthrough] = os.environ[passthrough]
        (self.dir / "home").mkdir(parents=True, exist_ok=True)
        full_env = {**base, **env}
        cwd = container.get("workingDir") or str(self.dir / "home")
        mounts = [
            (volumes[m["name"]], m["mountPath"], bool(m.get("readOnly")))
            for m in container.get("volumeMounts") or []
            if m["name"] in volumes
        ]
        missing = [
            m["name"] for m in container.get("volumeMounts") or [] if m["name"] not in volumes
        ]
        if missing:
            raise podspec.ContainerConfigError(f"volumeMounts refer to unknown volumes {missing}")
        mounts, tmpdir = podspec.host_safe_mounts(
            mounts, [Path(sys.prefix), Path(sys.executable), self.dir, *volumes.values()]
        )
        if tmpdir is not None:
            full_env["TMPDIR"] = str(tmpdir)
        # The wrapper execs into argv, so /proc shows argv[0] once the container runs.
        program = argv[0]
        if mounts or container.get("workingDir"):
            argv = self._in_mount_namespace(argv, mounts, cwd)
            cwd = str(self.dir)
        log_path = self.dir / "logs" / f"{container['name']}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            if attempt:
                out.write(f"--- restart {attempt} at {_now()} ---\n".encode())
            proc = subprocess.Popen(
                argv,
                env=full_env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pid_dir = self.dir / "pids"
        pid_dir.mkdir(parents=True, exist_ok=True)
        (pid_dir / f"{container['name']}.pid").write_text(f"{proc.pid}\n{program}")
        return proc

    @staticmethod
    def _in_mount_namespace(
        argv: list[str], mounts: list[tuple[Path, str, bool]], cwd: str
    ) -> list[str]:
        """Wraps argv so volumes appear at their mountPath, visible only to this process."""
        script = ["set -e"]
        for src, dst, read_only in mounts:
            script.append(f"mkdir -p {shlex.quote(dst)}")
            script.append(f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}")
            if read_only:
                script.append(f"mount -o remount,bind,ro {shlex.quote(dst)}")
        script.append(f"mkdir -p {shlex.quote(cwd)} && cd {shlex.quote(cwd)}")
        script.append('exec "$@"')
        unshare = shutil.which("unshare") or "unshare"
        return [
            unshare,
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            "\n".join(script),
            "edgeops-pod",
            *argv,
        ]

    # ----- lifecycle -----------------------------------------------------------------------

    def kill(self) -> None:
        self.stopping.set()
        grace = min(
            int(self.pod["spec"].get("terminationGracePeriodSeconds", 30)), MAX_GRACE_SECONDS
        )
        with self.lock:
            procs = list(self.procs.values())
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(self.dir / "pids", ignore_errors=True)

    def run(self) -> None:
        try:
            self._run()
        except Exception:  # a bug here must not take the node down
            log.exception("pod %s/%s runner crashed", self.namespace, self.pod_name)
            self._waiting("NodeError", "the local node failed to run this pod; see the node log")

    def _run(self) -> None:
        try:
            podspec.check_runnable(self.pod)
        except podspec.UnsupportedPodError as exc:
            self._waiting(exc.reason, exc.message)
            return
        volumes: dict[str, Path] | None = None
        while volumes is None and not self.stopping.is_set():
            try:
                volumes = self._prepare_volumes()
                # Resolve env of every container up front: a missing Secret blocks the start.
                for c in self.pod["spec"].get("containers") or []:
                    podspec.container_env(self.pod, c, self.node.lookup)
            except podspec.ContainerConfigError as exc:
                volumes = None
                self._waiting("CreateContainerConfigError", str(exc))
                self.stopping.wait(2)
            except podspec.UnsupportedPodError as exc:
                self._waiting(exc.reason, exc.message)
                return
        if volumes is None:
            return
        spec = self.pod["spec"]
        for init in spec.get("initContainers") or []:
            code = self._run_to_exit(init, volumes)
            if code != 0:
                self._finish({init["name"]: (code, _now(), _now())}, failed_init=True)
                return
        self._run_main(spec.get("containers") or [], volumes)

    def _run_to_exit(self, container: Obj, volumes: dict[str, Path]) -> int:
        proc = self._launch(container, volumes, 0)
        with self.lock:
            self.procs[container["name"]] = proc
        return proc.wait()

    def _run_main(self, containers: list[Obj], volumes: dict[str, Path]) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        deadline_s = self.pod["spec"].get("activeDeadlineSeconds")
        started: dict[str, str] = {}
        restarts: dict[str, int] = {c["name"]: 0 for c in containers}
        results: dict[str, tuple[int, str, str]] = {}
        by_name = {c["name"]: c for c in containers}
        for c in containers:
            try:
                proc = self._launch(c, volumes, 0)
            except podspec.ContainerConfigError as exc:
                self._waiting("CreateContainerConfigError", str(exc))
                return
            with self.lock:
                self.procs[c["name"]] = proc
            started[c["name"]] = _now()
        self._report_running(containers, started, restarts, results)
        begin = time.monotonic()
        while not self.stopping.is_set():
            changed = False
            for name, proc in list(self.procs.items()):
                if name not in by_name or name in results:
                    continue
                code = proc.poll()
                if code is None:
                    continue
                # A negative code means killed by signal N: the kubelet reports 128+N.
                code = 128 - code if code < 0 else code
                restart = policy == "Always" or (policy == "OnFailure" and code != 0)
                if restart and not self.stopping.is_set():
                    n = restarts[name]
                    self._report_running(
                        containers, started, restarts, results, last_exit={name: (code, _now())}
                    )
                    self.stopping.wait(
                        RESTART_BACKOFF_SECONDS[min(n, len(RESTART_BACKOFF_SECONDS) - 1)]
                    )
                    if self.stopping.is_set():
                        return
                    restarts[name] = n + 1
                    new = self._launch(by_name[name], volumes, n + 1)
                    with self.lock:
                        self.procs[name] = new
                    started[name] = _now()
                else:
                    results[name] = (code, started[name], _now())
                changed = True
            if len(results) == len(containers):
                self._finish(results, restarts=restarts)
                return
            if changed:
                self._report_running(containers, started, restarts, results)
            if deadline_s is not None and time.monotonic() - begin > int(deadline_s):
                self.kill()
                self._patch_status(
                    {
                        "phase": "Failed",
                        "reason": "DeadlineExceeded",
                        "message": f"Pod was active on the node longer than the specified deadline "
                        f"({deadline_s}s)",
                    }
                )
                return
            self.stopping.wait(0.2)

    def _report_running(
        self,
        containers: list[Obj],
        started: dict[str, str],
        restarts: dict[str, int],
        results: dict[str, tuple[int, str, str]],
        last_exit: dict[str, tuple[int, str]] | None = None,
    ) -> None:
        statuses = []
        for c in containers:
            name = c["name"]
            st: Obj = {
                "name": name,
                "image": c.get("image", ""),
                "imageID": "",
                "restartCount": restarts[name],
                "containerID": f"local://{self.uid}/{name}",
            }
            if name in results:
                code, s, f = results[name]
                st.update(
                    ready=False,
                    started=False,
                    state={
                        "terminated": {
                            "exitCode": code,
                            "reason": "Completed" if code == 0 else "Error",
                            "startedAt": s,
                            "finishedAt": f,
                        }
                    },
                )
            elif last_exit and name in last_exit:
                code, f = last_exit[name]
                st.update(
                    ready=False,
                    started=False,
                    state={
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off restarting failed container {name}",
                        }
                    },
                    lastState={
                        "terminated": {
                            "exitCode": code,
                            "reason": "Error",
                            "startedAt": started[name],
                            "finishedAt": f,
                        }
                    },
                )
            else:
                st.update(ready=True, started=True, state={"running": {"startedAt": started[name]}})
            statuses.append(st)
        all_ready = all(s.get("ready") for s in statuses)
        self._patch_status(
            {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "startTime": self.start_time,
                "conditions": self._conditions(all_ready),
                "containerStatuses": statuses,
            }
        )

    def _finish(
        self,
        results: dict[str, tuple[int, str, str]],
        failed_init: bool = False,
        restarts: dict[str, int] | None = None,
    ) -> None:
        failed = failed_init or any(code != 0 for code, _, _ in results.values())
        key = "initContainerStatuses" if failed_init else "containerStatuses"
        statuses = [
            {
                "name": name,
                "image": "",
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": (restarts or {}).get(name, 0),
                "containerID": f"local://{self.uid}/{name}",
                "state": {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "startedAt": s,
                        "finishedAt": f,
                    }
                },
            }
            for name, (code, s, f) in results.items()
        ]
        log.info(
            "pod %s/%s finished: %s",
            self.namespace,
            self.pod_name,
            {n: r[0] for n, r in results.items()},
        )
        self._patch_status(
            {
                "phase": "Failed" if failed else "Succeeded",
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "startTime": self.start_time,
                "conditions": self._conditions(False),
                key: statuses,
            }
        )
        shutil.rmtree(self.dir / "pids", ignore_errors=True)


class LocalNode:
    def __init__(
        self, api: client.ApiClient, node_name: str, state_dir: Path, kubelet_port: int = 0
    ) -> None:
        self.kubelet_port = kubelet_port
        self.api = api
        self.core = client.CoreV1Api(api)
        self.node_name = node_name
        self.state_dir = state_dir
        self.runners: dict[str, PodRunner] = {}
        self.last_sync = time.monotonic()
        self.stopping = threading.Event()
        host = api.configuration.host
        self.apiserver_port = int(host.rsplit(":", 1)[1])
        self.lookup = podspec.Lookup(secret=self._read_secret, config_map=self._read_config_map)

    def _read_secret(self, namespace: str, name: str) -> Obj | None:
        return self._read(self.core.read_namespaced_secret, namespace, name)

    def _read_config_map(self, namespace: str, name: str) -> Obj | None:
        return self._read(self.core.read_namespaced_config_map, namespace, name)

    def _read(self, fn: Any, namespace: str, name: str) -> Obj | None:
        try:
            obj = fn(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        result: Obj = self.api.sanitize_for_serialization(obj)
        return result

    # ----- node object ---------------------------------------------------------------------

    def _node_status(self) -> Obj:
        now = _now()
        return {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "edgeops local node is running pods as local processes",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                },
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node_name},
            ],
            "capacity": {"cpu": str(os.cpu_count() or 2), "memory": "24Gi", "pods": "110"},
            "allocatable": {"cpu": str(os.cpu_count() or 2), "memory": "24Gi", "pods": "110"},
            "nodeInfo": {
                "kubeletVersion": "edgeops-local",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "local-process://1",
                "kernelVersion": os.uname().release,
                "osImage": "local",
                "kubeProxyVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }

    def register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "edgeops.dev/local-node": "true",
                },
            },
        }
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self.core.patch_node_status(self.node_name, {"status": self._node_status()})

    def heartbeat(self) -> None:
        while not self.stopping.wait(10):
            try:
                self.core.patch_node_status(self.node_name, {"status": self._node_status()})
            except Exception as exc:
                log.warning("node heartbeat failed: %s", exc)

    # ----- pods ----------------------------------------------------------------------------

    def _bind(self, pod: Obj) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            # The generated client cannot deserialize the Binding response; skip decoding.
            self.core.create_namespaced_binding(meta["namespace"], body, _preload_content=False)
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], exc)

    def handle(self, event_type: str, pod: Obj) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if event_type == "DELETED":
            self._stop(uid)
            return
        if not node:
            if not meta.get("deletionTimestamp") and spec.get(
                "schedulerName", "default-scheduler"
            ) in ("default-scheduler", self.node_name):
                self._bind(pod)
            return
        if node != self.node_name:
            return
        if meta.get("deletionTimestamp"):
            self._stop(uid)
            if phase not in ("Succeeded", "Failed"):
                self._mark_killed(pod)
            try:
                self.core.delete_namespaced_pod(
                    meta["name"],
                    meta["namespace"],
                    grace_period_seconds=0,
                    body=client.V1DeleteOptions(
                        grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
                    ),
                )
            except ApiException as exc:
                if exc.status not in (404, 409):
                    log.warning(
                        "final delete of %s/%s failed: %s", meta["namespace"], meta["name"], exc
                    )
            return
        if uid in self.runners or phase in ("Succeeded", "Failed"):
            return
        runner = PodRunner(self, pod)
        self.runners[uid] = runner
        runner.start()

    def _mark_killed(self, pod: Obj) -> None:
        """A deleted pod whose containers were just killed ends Failed, as the kubelet
        reports it: a pod held by a finalizer (a Job's ``job-tracking``) is only released
        once it is terminal, and its Job counts it as a failed attempt."""
        meta = pod["metadata"]
        now = _now()
        statuses = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "restartCount": 0,
                "ready": False,
                "started": False,
                "containerID": f"local://{meta['uid']}/{c['name']}",
                "state": {
                    "terminated": {
                        "exitCode": 143,  # 128 + SIGTERM, as the kubelet reports it
                        "reason": "Error",
                        "startedAt": (pod.get("status") or {}).get("startTime") or now,
                        "finishedAt": now,
                    }
                },
            }
            for c in (pod.get("spec") or {}).get("containers") or []
        ]
        try:
            self.core.patch_namespaced_pod_status(
                meta["name"],
                meta["namespace"],
                {"status": {"phase": "Failed", "containerStatuses": statuses}},
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("marking %s/%s Failed: %s", meta["namespace"], meta["name"], exc)

    def _stop(self, uid: str) -> None:
        runner = self.runners.pop(uid, None)
        if runner is not None:
            runner.kill()

    def sync_forever(self) -> None:
        w = watch.Watch()
        while not self.stopping.is_set():
            try:
                listing = self.core.list_pod_for_all_namespaces()
                seen = set()
                for item in listing.items:
                    pod = self.api.sanitize_for_serialization(item)
                    seen.add(pod["metadata"]["uid"])
                    self.handle("ADDED", pod)
                for uid in list(self.runners):
                    if uid not in seen:
                        self._stop(uid)
                self.last_sync = time.monotonic()
                rv = listing.metadata.resource_version
                for event in w.stream(
                    self.core.list_pod_for_all_namespaces,
                    resource_version=rv,
                    timeout_seconds=30,
                    allow_watch_bookmarks=False,
                ):
                    if self.stopping.is_set():
                        break
                    obj = event["object"]
                    pod = obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj)
                    self.handle(event["type"], pod)
                    self.last_sync = time.monotonic()
                self.last_sync = time.monotonic()
            except ApiException as exc:
                if exc.status != 410:  # 410: resourceVersion too old, relist
                    log.warning("pod watch failed: %s", exc)
                    self.stopping.wait(1)
            except Exception as exc:
                log.warning("pod watch error: %s", exc)
                self.stopping.wait(1)

    def shutdown(self) -> None:
        self.stopping.set()
        for uid in list(self.runners):
            self._stop(uid)


def container_log(state_dir: Path, namespace: str, pod: str, container: str) -> Path | None:
    """The newest log file of a container (a pod name is unique per namespace at a time)."""
    candidates = sorted(
        state_dir.glob(f"pods/{namespace}_{pod}_*/logs/{container}.log"),
        key=lambda p: p.stat().st_mtime,
    )
    return candidates[-1] if candidates else None


def _serve_kubelet_api(node: LocalNode, port: int, cert: str, key: str, ca: str) -> None:
    """The slice of the kubelet API that `kubectl logs` uses, behind client-cert auth."""
    import ssl
    from urllib.parse import parse_qs, urlparse

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404, "only /containerLogs/{namespace}/{pod}/{container} is served")
                return
            _, namespace, pod, container = parts
            path = container_log(node.state_dir, namespace, pod, container)
            if path is None:
                self.send_error(404, f"no logs for {namespace}/{pod}/{container} on this node")
                return
            query = parse_qs(url.query)
            lines = path.read_bytes().splitlines(keepends=True)
            if "tailLines" in query:
                lines = lines[-int(query["tailLines"][0]) :] if int(query["tailLines"][0]) else []
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"".join(lines))
            if query.get("follow", ["false"])[0] != "true":
                return
            offset = path.stat().st_size
            uid_runner = next(
                (
                    r
                    for r in node.runners.values()
                    if r.namespace == namespace and r.pod_name == pod
                ),
                None,
            )
            while uid_runner is not None and uid_runner.is_alive():
                time.sleep(0.5)
                size = path.stat().st_size
                if size > offset:
                    with path.open("rb") as f:
                        f.seek(offset)
                        self.wfile.write(f.read(size - offset))
                        self.wfile.flush()
                    offset = size

        def log_message(self, format: str, *args: Any) -> None:
            return

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def _serve_health(node: LocalNode, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = time.monotonic() - node.last_sync < 90
            body = json.dumps({"ok": ok, "pods": len(node.runners)}).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="EdgeOps devcluster local node")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--health-port", type=int, required=True)
    parser.add_argument("--kubelet-port", type=int, required=True)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api = config.new_client_from_config(config_file=args.kubeconfig)
    node = LocalNode(api, args.node_name, args.state_dir, args.kubelet_port)
    kill_leftover_pods(args.state_dir)

    def on_term(signum: int, frame: Any) -> None:
        log.info("stopping: killing %d pod(s)", len(node.runners))
        node.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    node.register()
    _serve_health(node, args.health_port)
    _serve_kubelet_api(
        node, args.kubelet_port, args.tls_cert, args.tls_key, api.configuration.ssl_ca_cert
    )
    threading.Thread(target=node.heartbeat, daemon=True).start()
    log.info("node %s registered; watching pods", args.node_name)
    node.sync_forever()


if __name__ == "__main__":
    main()
