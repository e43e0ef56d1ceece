"""Operator cost at rest and reaction time, baseline vs candidate, in one devcluster.

    PYTHONPATH=operator .venv/bin/python benchmarks/operator.py [--objects 300]
        [--namespaces 6] [--idle-seconds 120] [--probes 40] [--baseline-ref 532453a] [--json]

What runs
    One devcluster (`edgeops.devcluster`: etcd, kube-apiserver, kube-controller-manager,
    MinIO, Prometheus) *without the EdgeOps operator and without the local node*. The
    benchmark starts each operator under test itself, one after the other:

    * baseline: ``--baseline-ref`` (default 532453a) checked out with ``git worktree add``
      into a temporary directory, run with ``PYTHONPATH=<that tree>/operator``;
    * candidate: the working tree this script lives in (``<repo>/operator``), uncommitted
      changes included.

    Both run as ``python -m edgeops operator run`` with the devcluster's environment, the
    same interpreter and the same CRDs (generated from the candidate, as ``edgeops dev up``
    does for the code that runs it).

Why no local node
    Every EdgeModel starts a TrainingRun and every TrainingRun creates a batch/v1 Job; with
    the node, N TensorFlow trainers would run on this machine. Without it nothing binds the
    Job's pods: they stay Pending, so every run stays unfinished (phase Pending, Job
    created) for as long as the benchmark needs, exactly the state a busy cluster with
    queued training is in, and the state in which the polling controllers do the most
    work (a running TrainingRun GETs its Job and LISTs its pods on every tick). The
    alternatives were worse: an image the node cannot run makes runs Failed at once, and
    a trainer that sleeps still costs one process per run.

What it creates (per operator, in fresh namespaces ``bench-<label>-<i>``)
    ``--objects`` N Datasets and N EdgeModels spread over ``--namespaces`` namespaces. Each
    Dataset reads its own tiny S3 inbox (60 CSV rows uploaded by the benchmark), so
    collecting a version costs little and the run measures the controllers, not CSV
    parsing. Each EdgeModel trains its Dataset; when the Dataset gets its first version the
    EdgeModel controller starts TrainingRun ``<model>-r1`` (the "initial training" trigger),
    and the TrainingRun controller creates its Job: N of each kind in all. When that
    operator is done the namespaces are deleted (and gone) before the next one starts, so
    each operator sees the same fresh objects and nothing left by the other one.

Phases, per operator
    1. settle: start the operator, wait until every Dataset has a version, every EdgeModel
       names a TrainingRun that has its Job, and no Dataset, EdgeModel or TrainingRun has
       changed (resourceVersion) for ``--settle-quiet`` seconds. "settle s" is the time
       from the operator's start to the beginning of that quiet period.
    2. idle window (``--idle-seconds``): nothing changes; the benchmark makes no API call.
    3. reaction probes, on ``--probes`` K EdgeModels spread over the namespaces, one after
       the other about ``--probe-interval`` apart (jittered): the benchmark fails the
       model's training Job the way an overrunning training fails (it sets the Job's
       activeDeadlineSeconds to 1; the Job controller fails the Job with
       DeadlineExceeded) and follows TrainingRuns and EdgeModels with watches. The
       operator's TrainingRun controller turns the run Failed, then its EdgeModel
       controller registers the run as a (Rejected) version. Why not write the run's
       status by hand: the TrainingRun controller derives the phase from the Job, so a
       hand-written Failed over a Pending Job is rightly written back (the baseline did,
       within seconds, in a trial) and the owner may never see it.
    4. stop the operator, remove the finalizers Kopf put on the objects (nobody is left to
       remove them), delete the namespaces and wait until they are gone (skipped after the
       last operator: its objects go with the devcluster).

The numbers
    requests/min   API requests the operator made during the idle window, per minute.
                   The operator runs with a client certificate of its own (user
                   ``edgeops-bench-<label>``, group system:masters) and the apiserver writes
                   an audit log (policy: level Metadata for those users only, stage
                   RequestReceived omitted). Counted: distinct audit IDs of that user whose
                   requestReceivedTimestamp is in the window (a watch counts once, when it
                   is opened). The benchmark's own requests use the admin user and are not
                   logged at all. The busiest verb/resource pairs are listed below the table.
    CPU s/min      user+system CPU seconds of the operator process during the idle window,
                   per minute (60 s/min = one core busy).
    RSS MB         the operator's resident set size at the end of the idle window (peak
                   over its whole life, VmHWM, in the JSON).
    p50/p99 s      child -> owner reaction: from the watch delivering the TrainingRun with
                   phase Failed to the watch delivering its EdgeModel with a version whose
                   trainingRun is that run (the EdgeModel controller labels the run,
                   records a Rejected version "training failed: ...", publishes the
                   registry index to S3 and patches status). Both ends are seen the same
                   way, so watch delivery delays mostly cancel out.
    chain p50/p99  the whole chain Job -> TrainingRun -> EdgeModel: from the return of the
                   PATCH that fails the Job to the same EdgeModel event.
    apiserver/etcd CPU   CPU s/min of those processes during the idle window: what the
                   operator's polling costs the control plane.
    other CPU      CPU s/min of every other process on the machine during the idle window
                   (machine-wide busy time minus the operator, the devcluster and this
                   script). On a shared machine this is the load that competes with what is
                   measured; the table warns when it exceeds 10 % of the machine.
    ratios         candidate / baseline for each number (lower is better for all).

    Percentiles interpolate linearly over the K samples (with K=40, p99 is close to the
    maximum). A probe not seen within ``--probe-timeout`` after the last one is counted as
    missed and left out of the percentiles.

Caveats: one machine, one run: absolute numbers depend on it, ratios much less. The
baseline runs first, on a fresh apiserver; the candidate second, after the baseline's
objects were deleted. The apiserver, etcd and the controller manager share the CPU with
the operator: an operator that keeps the machine busy also slows the apiserver it waits
for, which limits how many requests it can make (a polling operator that falls behind its
timers makes fewer requests per minute than its timers ask for, and reacts later).
"""

from __future__ import annotations

import sys

# This file shares its name with the standard library's `operator`, and a script's own
# directory comes first on sys.path: move it last before anything imports `operator`.
sys.path.sort(key=lambda entry: entry.rstrip("/").endswith("/benchmarks"))

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from edgeops.api.constants import DATASETS, EDGE_MODELS, GROUP, TRAINING_RUNS, VERSION
from edgeops.datasets.layout import inbox_prefix
from edgeops.devcluster import processes
from edgeops.devcluster.cluster import DevCluster
from edgeops.store import ArtifactStore, StoreConfig

REPO = Path(__file__).resolve().parents[1]
BENCH_LABEL = "edgeops.dev/benchmark"
SUBJECT_LABEL = "edgeops.dev/benchmark-subject"
INBOX_CSV = "t,ax,label,site\n" + "".join(
    f"{i},{i * 0.5},{'walk' if i % 3 else 'run'},{'a' if i % 2 else 'b'}\n" for i in range(60)
)


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- what is measured ----------------------------------------------------------------------


@dataclass
class Subject:
    """One operator under test: where its code is and whom it authenticates as."""

    label: str
    tree: Path
    description: str
    commit: str

    @property
    def user(self) -> str:
        return f"edgeops-bench-{self.label}"

    @property
    def pythonpath(self) -> Path:
        return self.tree / "operator"


@dataclass
class Result:
    label: str
    description: str
    commit: str
    user: str
    objects: int
    settle_seconds: float
    idle_seconds: float
    requests: int
    requests_per_min: float
    cpu_seconds_per_min: float
    rss_mb: float
    rss_peak_mb: float
    #: TrainingRun turned Failed (by the operator) -> its EdgeModel lists the version.
    reaction_p50_s: float | None
    reaction_p99_s: float | None
    reaction_max_s: float | None
    reaction_samples: int
    #: Job PATCHed to fail -> its EdgeModel lists the version (Job -> run -> model).
    chain_p50_s: float | None
    chain_p99_s: float | None
    chain_max_s: float | None
    runs_missed: int
    models_missed: int
    #: CPU seconds per minute of the control plane's own processes in the idle window.
    apiserver_cpu_seconds_per_min: float
    etcd_cpu_seconds_per_min: float
    kcm_cpu_seconds_per_min: float
    #: CPU s/min of every other process on the machine (not this benchmark, its cluster or
    #: the operator): load that competes with what is measured.
    other_cpu_seconds_per_min: float
    load_average: float
    top_requests: dict[str, float] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# --- git ------------------------------------------------------------------------------------


def _git(*args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@contextlib.contextmanager
def baseline_tree(ref: str, parent: Path) -> Iterator[Subject]:
    """The baseline's source, checked out (detached) into a temporary worktree."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    path = parent / "baseline-src"
    _git("worktree", "add", "--detach", str(path), commit)
    try:
        yield Subject("baseline", path, f"{ref} ({commit[:10]})", commit)
    finally:
        _git("worktree", "remove", "--force", str(path))


def candidate_subject() -> Subject:
    commit = _git("rev-parse", "HEAD")
    dirty = " + uncommitted changes" if _git("status", "--porcelain") else ""
    return Subject("candidate", REPO, f"working tree ({commit[:10]}{dirty})", commit)


# --- cluster objects ------------------------------------------------------------------------


def audit_policy(users: list[str]) -> str:
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata", "users": users}, {"level": "None"}],
    }
    return json.dumps(policy, indent=2)  # JSON is valid YAML


def _names(index: int) -> tuple[str, str]:
    return f"data-{index:04d}", f"model-{index:04d}"


def manifests(subject: Subject, namespaces: list[str], count: int) -> list[dict[str, Any]]:
    labels = {BENCH_LABEL: "operator", SUBJECT_LABEL: subject.label}
    items: list[dict[str, Any]] = []
    for i in range(count):
        ns = namespaces[i % len(namespaces)]
        dataset, model = _names(i)
        items.append(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Dataset",
                "metadata": {"name": dataset, "namespace": ns, "labels": labels},
                "spec": {
                    "sources": [{"inbox": {}}],
                    "schema": {
                        "features": [{"name": "ax", "type": "float", "min": -100, "max": 100}],
                        "label": "label",
                        "sliceColumns": ["site"],
                        "rowKey": ["t"],
                    },
                    "validation": {"maxRejectedFraction": 0.1},
                    "governance": {"classification": "internal", "retentionDays": 30},
                },
            }
        )
        items.append(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "EdgeModel",
                "metadata": {"name": model, "namespace": ns, "labels": labels},
                "spec": {
                    "training": {
                        "datasetRef": {"name": dataset},
                        "trainer": {"hyperparameters": {"epochs": 1}},
                        "exports": ["onnx"],
                        "backoffLimit": 0,
                    },
                    "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
                },
            }
        )
    return items


def create_objects(
    dev: DevCluster, subject: Subject, namespaces: list[str], count: int
) -> list[tuple[str, str]]:
    """Namespaces, inbox data, Datasets and EdgeModels; returns (namespace, model) pairs."""
    labels = {BENCH_LABEL: "operator", SUBJECT_LABEL: subject.label}
    ns_list = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": labels}}
            for n in namespaces
        ],
    }
    dev.kubectl("create", "-f", "-", input=json.dumps(ns_list))
    env = dev.env()
    store = ArtifactStore(
        StoreConfig(
            endpoint=env["EDGEOPS_S3_ENDPOINT"],
            access_key=env["EDGEOPS_S3_ACCESS_KEY"],
            secret_key=env["EDGEOPS_S3_SECRET_KEY"],
            bucket=env["EDGEOPS_S3_BUCKET"],
        )
    )
    for i in range(count):
        store.put_bytes(
            inbox_prefix(namespaces[i % len(namespaces)], _names(i)[0]) + "samples.csv",
            INBOX_CSV.encode(),
            "text/csv",
        )
    objs = manifests(subject, namespaces, count)
    dev.kubectl(
        "create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
    )
    return [(namespaces[i % len(namespaces)], _names(i)[1]) for i in range(count)]


def delete_namespaces(api: client.ApiClient, dev: DevCluster, subject: Subject) -> None:
    """Deletes the subject's namespaces once its operator has stopped, and waits until they
    are gone. Kopf puts a finalizer on every object that has a timer; with no operator left
    to remove them, the benchmark does, so the namespaces do not hang in Terminating."""
    selector = f"{BENCH_LABEL}=operator,{SUBJECT_LABEL}={subject.label}"
    core = client.CoreV1Api(api)
    started = time.monotonic()
    names = {n.metadata.name for n in core.list_namespace(label_selector=selector).items}
    stripped = _strip_finalizers(api, names)
    dev.kubectl("delete", "namespace", "-l", selector, "--wait=false")
    while time.monotonic() - started < 600:
        if not core.list_namespace(label_selector=selector).items:
            log(
                f"{subject.label}: namespaces gone in {time.monotonic() - started:.0f}s "
                f"({stripped} finalizers removed first)"
            )
            return
        time.sleep(2)
        if time.monotonic() - started > 60:
            # An object created after the first pass (by the stopped operator) or a
            # finalizer added since: remove them again.
            _strip_finalizers(api, names)
    log(f"warning: namespaces of {subject.label} still terminating after 600 s")


def _strip_finalizers(api: client.ApiClient, namespaces: set[str]) -> int:
    custom = client.CustomObjectsApi(api)
    found = [
        (plural, obj["metadata"]["namespace"], obj["metadata"]["name"])
        for plural in (DATASETS, EDGE_MODELS, TRAINING_RUNS)
        for obj in custom.list_cluster_custom_object(GROUP, VERSION, plural)["items"]
        if obj["metadata"]["namespace"] in namespaces and obj["metadata"].get("finalizers")
    ]

    def strip(item: tuple[str, str, str]) -> None:
        plural, namespace, name = item
        with contextlib.suppress(ApiException):
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, {"metadata": {"finalizers": None}}
            )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(strip, found))
    return len(found)


# --- settling -------------------------------------------------------------------------------


@dataclass
class Snapshot:
    versioned_datasets: int
    models_with_run: int
    runs_with_job: int
    fingerprint: int
    runs: dict[tuple[str, str], dict[str, Any]]  # (namespace, model) -> its TrainingRun


def snapshot(api: client.ApiClient, namespaces: set[str]) -> Snapshot:
    custom = client.CustomObjectsApi(api)

    def items(plural: str) -> list[dict[str, Any]]:
        found = custom.list_cluster_custom_object(GROUP, VERSION, plural)["items"]
        return [o for o in found if o["metadata"]["namespace"] in namespaces]

    datasets, models, runs = items(DATASETS), items(EDGE_MODELS), items(TRAINING_RUNS)
    by_name = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in runs}
    model_runs: dict[tuple[str, str], dict[str, Any]] = {}
    for m in models:
        ns, name = m["metadata"]["namespace"], m["metadata"]["name"]
        run = by_name.get((ns, (m.get("status") or {}).get("lastTrainingRun") or ""))
        if run is not None:
            model_runs[(ns, name)] = run
    versions = sorted(
        (
            o["kind"],
            o["metadata"]["namespace"],
            o["metadata"]["name"],
            o["metadata"]["resourceVersion"],
        )
        for o in (*datasets, *models, *runs)
    )
    return Snapshot(
        versioned_datasets=sum(1 for d in datasets if (d.get("status") or {}).get("latestVersion")),
        models_with_run=len(model_runs),
        runs_with_job=sum(1 for r in model_runs.values() if (r.get("status") or {}).get("jobName")),
        fingerprint=hash(tuple(versions)),
        runs=model_runs,
    )


def wait_settled(
    api: client.ApiClient,
    namespaces: set[str],
    count: int,
    quiet: float,
    timeout: float,
    alive: Callable[[], bool],
) -> tuple[Snapshot, float]:
    """Polls until everything exists and nothing changed for `quiet` seconds; returns the
    last snapshot and the monotonic time the quiet period began."""
    started = time.monotonic()
    deadline = started + timeout
    last_print = 0.0
    fingerprint, since = None, started
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the operator exited while the objects settled")
        snap = snapshot(api, namespaces)
        now = time.monotonic()
        if snap.fingerprint != fingerprint:
            fingerprint, since = snap.fingerprint, now
        complete = count == snap.versioned_datasets == snap.models_with_run == snap.runs_with_job
        if complete and now - since >= quiet:
            return snap, since
        if now - last_print >= 15:
            last_print = now
            log(
                f"  settling {now - started:4.0f}s: datasets with a version "
                f"{snap.versioned_datasets}/{count}, models with a run {snap.models_with_run}/"
                f"{count}, runs with a Job {snap.runs_with_job}/{count}, "
                f"unchanged for {now - since:.0f}s"
            )
        time.sleep(5)
    raise RuntimeError(f"objects did not settle within {timeout:.0f}s")


# --- the operator process -------------------------------------------------------------------


class OperatorProcess:
    def __init__(self, dev: DevCluster, subject: Subject, log_path: Path) -> None:
        self.subject = subject
        self.log_path = log_path
        self.health_port = processes.free_port()
        metrics_port = processes.free_port()
        env = {
            **os.environ,
            **dev.env(),
            "KUBECONFIG": str(dev.user_kubeconfig(subject.user)),
            "PYTHONPATH": str(subject.pythonpath),
        }
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.env = env
        self.argv = [
            sys.executable,
            "-m",
            "edgeops",
            "operator",
            "run",
            f"--health-port={self.health_port}",
            f"--metrics-port={metrics_port}",
        ]
        self.pid: int | None = None

    def check_source(self) -> str:
        """The edgeops package this environment imports: it must be the subject's."""
        out = subprocess.run(
            [sys.executable, "-c", "import edgeops; print(edgeops.__file__)"],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not Path(out).resolve().is_relative_to(self.subject.pythonpath.resolve()):
            raise RuntimeError(f"{self.subject.label}: edgeops imports from {out}")
        return out

    def start(self) -> None:
        self.pid = processes.start(self.argv, self.log_path, self.env, cwd=self.log_path.parent)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"operator exited during start-up:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                url = f"http://127.0.0.1:{self.health_port}/healthz"
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"operator not healthy after 120 s:\n{self.tail()}")

    def alive(self) -> bool:
        return self.pid is not None and processes.alive(self.pid, self.argv[0])

    def process(self) -> psutil.Process:
        assert self.pid is not None
        return psutil.Process(self.pid)

    def cpu_seconds(self) -> float:
        times = self.process().cpu_times()
        return float(times.user + times.system)

    def rss_mb(self) -> float:
        return float(self.process().memory_info().rss) / 2**20

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.pid is not None:
            processes.stop(self.pid, self.argv[0], timeout=30)

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


# --- audit log ------------------------------------------------------------------------------


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def count_requests(
    audit_log: Path, offset: int, user: str, start: float, end: float
) -> tuple[int, Counter[str]]:
    """Distinct requests of `user` received in [start, end), read from byte `offset` on
    (nothing received after `start` can have been written before it)."""
    seen: set[str] = set()
    kinds: Counter[str] = Counter()
    needle = f'"username":"{user}"'.encode()
    with audit_log.open("rb") as f:
        f.seek(offset)
        for line in f:
            if needle not in line:
                continue
            entry = json.loads(line)
            received = _epoch(entry["requestReceivedTimestamp"])
            if not start <= received < end or entry["auditID"] in seen:
                continue
            seen.add(entry["auditID"])
            ref = entry.get("objectRef") or {}
            what = ref.get("resource") or entry.get("requestURI", "?").split("?")[0]
            if ref.get("subresource"):
                what += "/" + ref["subresource"]
            kinds[f"{entry['verb']} {what}"] += 1
    return len(seen), kinds


# --- reaction probes ------------------------------------------------------------------------

Key = tuple[str, str]  # (namespace, name)


class Follower(threading.Thread):
    """Watches one kind cluster-wide and notes the (monotonic) time each awaited object
    first satisfies its predicate, as the watch delivers it."""

    def __init__(
        self,
        api: client.ApiClient,
        plural: str,
        done: Callable[[dict[str, Any], str], bool],
        selector: str | None = None,
    ) -> None:
        super().__init__(daemon=True, name=f"follow-{plural}")
        self.custom = client.CustomObjectsApi(api)
        self.plural = plural
        self.done = done
        self.selector = selector
        self.awaited: dict[Key, str] = {}  # what to wait for -> argument of `done`
        self.seen: dict[Key, float] = {}
        self.relists = 0
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.resource_version = self._relist()

    def expect(self, key: Key, what: str) -> None:
        with self.lock:
            self.awaited[key] = what

    def _relist(self) -> str:
        listed = self.custom.list_cluster_custom_object(
            GROUP, VERSION, self.plural, label_selector=self.selector
        )
        now = time.monotonic()
        for obj in listed["items"]:
            self._check(obj, now)
        return str(listed["metadata"]["resourceVersion"])

    def _check(self, obj: dict[str, Any], now: float) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        with self.lock:
            what = self.awaited.get(key)
            if what is not None and key not in self.seen and self.done(obj, what):
                self.seen[key] = now

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    self.plural,
                    label_selector=self.selector,
                    resource_version=self.resource_version,
                    timeout_seconds=5,
                    _request_timeout=30,
                )
                for event in stream:
                    now = time.monotonic()
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch error: {obj}")
                    self.resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._check(obj, now)
                    if self.halt.is_set():
                        return
            except Exception as error:  # a broken or expired watch: list again, go on
                self.relists += 1
                log(f"  watch of {self.plural} broke ({type(error).__name__}); listing again")
                time.sleep(0.5)
                with contextlib.suppress(Exception):
                    self.resource_version = self._relist()


def _run_failed(run: dict[str, Any], _: str) -> bool:
    return (run.get("status") or {}).get("phase") == "Failed"


def _model_lists(model: dict[str, Any], run: str) -> bool:
    versions = (model.get("status") or {}).get("versions") or []
    return any(v.get("trainingRun") == run for v in versions)


@dataclass
class Reactions:
    owner: list[float]  # run Failed -> its EdgeModel lists the version
    chain: list[float]  # Job PATCHed -> its EdgeModel lists the version
    run_missed: int
    model_missed: int


def probe_reactions(
    api: client.ApiClient,
    subject: Subject,
    targets: list[tuple[str, str, dict[str, Any]]],
    interval: float,
    timeout: float,
) -> Reactions:
    """Fails each target's Job, then times its TrainingRun turning Failed and its EdgeModel
    listing the run as a version."""
    batch = client.BatchV1Api(api)
    runs = Follower(api, TRAINING_RUNS, _run_failed)
    models = Follower(
        api, EDGE_MODELS, _model_lists, f"{BENCH_LABEL}=operator,{SUBJECT_LABEL}={subject.label}"
    )
    for ns, model, run in targets:
        runs.expect((ns, run["metadata"]["name"]), "")
        models.expect((ns, model), run["metadata"]["name"])
    runs.start()
    models.start()
    rng = random.Random(7)
    failed_at: dict[Key, float] = {}
    try:
        for ns, model, run in targets:
            # A deadline already past: the Job controller fails the Job (DeadlineExceeded)
            # and deletes its pod, as when a training overruns activeDeadlineSeconds.
            batch.patch_namespaced_job(
                run["status"]["jobName"], ns, {"spec": {"activeDeadlineSeconds": 1}}
            )
            failed_at[(ns, model)] = time.monotonic()
            time.sleep(interval * rng.uniform(0.5, 1.5))
        deadline = time.monotonic() + timeout
        while len(models.seen) < len(targets) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        runs.halt.set()
        models.halt.set()
    owner, chain = [], []
    for ns, model, run in targets:
        seen_run = runs.seen.get((ns, run["metadata"]["name"]))
        seen_model = models.seen.get((ns, model))
        if seen_model is None:
            continue
        chain.append(max(0.0, seen_model - failed_at[(ns, model)]))
        if seen_run is not None:
            owner.append(max(0.0, seen_model - seen_run))
    return Reactions(
        owner=owner,
        chain=chain,
        run_missed=len(targets) - len(runs.seen),
        model_missed=len(targets) - len(models.seen),
    )


# --- one operator, end to end ---------------------------------------------------------------


CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager")


def component_cpu(dev: DevCluster) -> dict[str, float]:
    """CPU seconds so far of each running devcluster component."""
    found = {}
    for component in dev.status():
        if component.running and component.pid is not None:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(component.pid).cpu_times()
                found[component.name] = float(times.user + times.system)
    return found


def machine_busy() -> float:
    """CPU seconds the whole machine spent not idle (all cores, all processes)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


def own_cpu() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def measure(
    dev: DevCluster,
    api: client.ApiClient,
    subject: Subject,
    args: argparse.Namespace,
    clean_up: bool = True,
) -> Result:
    namespaces = [f"bench-{subject.label}-{i}" for i in range(args.namespaces)]
    log(f"{subject.label}: {subject.description}, user {subject.user}")
    models = create_objects(dev, subject, namespaces, args.objects)
    log(f"{subject.label}: created {args.objects} Datasets and EdgeModels in {namespaces}")
    op = OperatorProcess(dev, subject, dev.logs / f"operator-{subject.label}.log")
    log(f"{subject.label}: edgeops from {op.check_source()}; log {op.log_path}")
    started = time.monotonic()
    op.start()
    try:
        snap, quiet_since = wait_settled(
            api, set(namespaces), args.objects, args.settle_quiet, args.settle_timeout, op.alive
        )
        settle = quiet_since - started
        log(f"{subject.label}: settled {settle:.0f}s after the operator started")

        log(f"{subject.label}: idle window of {args.idle_seconds:.0f}s")
        offset = dev.audit_log.stat().st_size
        busy0, mine0, comps0 = machine_busy(), own_cpu(), component_cpu(dev)
        cpu0, t0 = op.cpu_seconds(), time.time()
        end = t0 + args.idle_seconds
        while time.time() < end:
            time.sleep(min(2.0, max(0.0, end - time.time())))
        cpu1, t1 = op.cpu_seconds(), time.time()
        busy1, mine1, comps1 = machine_busy(), own_cpu(), component_cpu(dev)
        rss, peak = op.rss_mb(), op.peak_rss_mb()
        if not op.alive():
            raise RuntimeError(f"the operator exited during the idle window:\n{op.tail()}")
        time.sleep(2)  # responses of requests received just before t1
        requests, kinds = count_requests(dev.audit_log, offset, subject.user, t0, t1)
        minutes = (t1 - t0) / 60
        comps = {k: (comps1[k] - comps0[k]) / minutes for k in comps0.keys() & comps1.keys()}
        plane = {k: round(comps.get(k, 0.0), 2) for k in CONTROL_PLANE}
        ours = (cpu1 - cpu0) / minutes + (mine1 - mine0) / minutes + sum(comps.values())
        other = max(0.0, (busy1 - busy0) / minutes - ours)
        log(
            f"{subject.label}: {requests} requests, {cpu1 - cpu0:.1f} CPU s in the window "
            f"(control plane CPU s/min: {plane}; other processes on the machine: "
            f"{other:.1f} CPU s/min of {60 * (psutil.cpu_count() or 1)})"
        )

        step = args.objects / args.probes
        picked = [models[int(i * step)] for i in range(args.probes)]
        targets = [(ns, model, snap.runs[(ns, model)]) for ns, model in picked]
        log(f"{subject.label}: {len(targets)} reaction probes")
        reactions = probe_reactions(api, subject, targets, args.probe_interval, args.probe_timeout)
        owner, chain = reactions.owner, reactions.chain
        log(
            f"{subject.label}: run->model p50 {_round(percentile(owner, 50))} s, "
            f"p99 {_round(percentile(owner, 99))} s; Job->model p50 "
            f"{_round(percentile(chain, 50))} s, p99 {_round(percentile(chain, 99))} s; "
            f"missed: {reactions.run_missed} runs, {reactions.model_missed} models"
        )
        result = Result(
            label=subject.label,
            description=subject.description,
            commit=subject.commit,
            user=subject.user,
            objects=args.objects,
            settle_seconds=round(settle, 1),
            idle_seconds=round(t1 - t0, 1),
            requests=requests,
            requests_per_min=round(requests / minutes, 1),
            cpu_seconds_per_min=round((cpu1 - cpu0) / minutes, 2),
            rss_mb=round(rss, 1),
            rss_peak_mb=round(peak, 1),
            reaction_p50_s=_round(percentile(owner, 50)),
            reaction_p99_s=_round(percentile(owner, 99)),
            reaction_max_s=_round(max(owner) if owner else None),
            reaction_samples=len(owner),
            chain_p50_s=_round(percentile(chain, 50)),
            chain_p99_s=_round(percentile(chain, 99)),
            chain_max_s=_round(max(chain) if chain else None),
            runs_missed=reactions.run_missed,
            models_missed=reactions.model_missed,
            apiserver_cpu_seconds_per_min=plane["kube-apiserver"],
            etcd_cpu_seconds_per_min=plane["etcd"],
            kcm_cpu_seconds_per_min=plane["kube-controller-manager"],
            other_cpu_seconds_per_min=round(other, 1),
            load_average=round(os.getloadavg()[0], 2),
            top_requests={k: round(v / minutes, 1) for k, v in kinds.most_common(8)},
        )
    finally:
        op.stop()
        log(f"{subject.label}: operator stopped")
        if clean_up:
            delete_namespaces(api, dev, subject)
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --- output ---------------------------------------------------------------------------------

Column = tuple[str, str, str]  # header, Result field, format
MAIN_COLUMNS: tuple[Column, ...] = (
    ("requests/min", "requests_per_min", "{:.0f}"),
    ("CPU s/min", "cpu_seconds_per_min", "{:.2f}"),
    ("RSS MB", "rss_mb", "{:.0f}"),
    ("p50 s", "reaction_p50_s", "{:.3f}"),
    ("p99 s", "reaction_p99_s", "{:.3f}"),
)
MORE_COLUMNS: tuple[Column, ...] = (
    ("chain p50 s", "chain_p50_s", "{:.3f}"),
    ("chain p99 s", "chain_p99_s", "{:.3f}"),
    ("apiserver CPU", "apiserver_cpu_seconds_per_min", "{:.2f}"),
    ("etcd CPU", "etcd_cpu_seconds_per_min", "{:.2f}"),
    ("settle s", "settle_seconds", "{:.0f}"),
    ("other CPU", "other_cpu_seconds_per_min", "{:.1f}"),
)


def ratios(baseline: Result, candidate: Result) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for _, key, _fmt in (*MAIN_COLUMNS, *MORE_COLUMNS):
        b, c = getattr(baseline, key), getattr(candidate, key)
        out[key] = None if b in (None, 0) or c is None else round(c / b, 3)
    return out


def _table(results: list[Result], columns: tuple[Column, ...]) -> None:
    head = f"{'operator':<22}" + "".join(f"{name:>14}" for name, _, _ in columns)
    print(head)
    print("-" * len(head))
    for r in results:
        cells = "".join(
            f"{'-' if getattr(r, key) is None else fmt.format(getattr(r, key)):>14}"
            for _, key, fmt in columns
        )
        print(f"{r.label:<22}{cells}")
    ratio = ratios(*results)
    cells = "".join(
        f"{'-' if ratio[key] is None else f'{ratio[key]:.3f}':>14}" for _, key, _ in columns
    )
    print(f"{'candidate / baseline':<22}{cells}")


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"\nEdgeOps operator at rest and reacting: {args.objects} Datasets + {args.objects} "
        f"EdgeModels + {args.objects} TrainingRuns (Jobs Pending) in {args.namespaces} "
        f"namespaces; idle window {args.idle_seconds:.0f}s; {args.probes} reaction probes"
    )
    for r in results:
        print(f"  {r.label}: {r.description}")
    print()
    _table(results, MAIN_COLUMNS)
    print(
        "\nrequests/min: apiserver audit log, distinct requests of the operator's own client "
        "certificate user received in the idle window (the benchmark's requests are another "
        "user's and not logged). CPU s/min, RSS MB: the operator process, same window.\n"
        "p50/p99 s: a TrainingRun turned Failed (written by the operator after its Job "
        "failed) -> its EdgeModel's status lists the version (both seen through watches).\n"
    )
    _table(results, MORE_COLUMNS)
    print(
        "\nchain: from the PATCH that fails the Job (activeDeadlineSeconds=1) to the same "
        "EdgeModel status (Job -> TrainingRun -> EdgeModel). apiserver/etcd CPU: CPU s/min of "
        "those processes in the idle window. settle s: operator start -> all objects settled. "
        "other CPU: CPU s/min of every other process on the machine in the idle window."
    )
    capacity = 60 * (psutil.cpu_count() or 1)
    busy = [r for r in results if r.other_cpu_seconds_per_min > 0.1 * capacity]
    if busy:
        print(
            "WARNING: other processes used "
            + ", ".join(f"{r.other_cpu_seconds_per_min:.0f}" for r in busy)
            + f" CPU s/min (of {capacity}) during the idle window of "
            + ", ".join(r.label for r in busy)
            + ": the numbers are disturbed; run again on a quiet machine."
        )
    for r in results:
        missed = (
            f"; missed: {r.runs_missed} runs, {r.models_missed} models"
            if r.runs_missed or r.models_missed
            else ""
        )
        print(
            f"\n{r.label}: user {r.user}, {r.requests} requests in {r.idle_seconds:.0f}s, "
            f"peak RSS {r.rss_peak_mb:.0f} MB, reaction max {r.reaction_max_s} s, chain max "
            f"{r.chain_max_s} s{missed}; busiest requests per minute:"
        )
        for what, per_min in r.top_requests.items():
            print(f"    {per_min:>9.1f}  {what}")


# --- main -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=300, help="Datasets (= EdgeModels)")
    parser.add_argument("--namespaces", type=int, default=6)
    parser.add_argument("--idle-seconds", type=float, default=120)
    parser.add_argument("--probes", type=int, default=40, help="reaction probes per operator")
    parser.add_argument("--probe-interval", type=float, default=0.5, help="mean seconds apart")
    parser.add_argument("--probe-timeout", type=float, default=180)
    parser.add_argument("--settle-quiet", type=float, default=20)
    parser.add_argument("--settle-timeout", type=float, default=900)
    parser.add_argument("--baseline-ref", default="532453a")
    parser.add_argument(
        "--json", action="store_true", help="JSON on stdout (the table goes to stderr)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the devcluster's state dir")
    args = parser.parse_args()
    args.probes = max(1, min(args.probes, args.objects))
    args.namespaces = max(1, min(args.namespaces, args.objects))
    return args


def main() -> None:
    args = parse_args()
    imported = Path(sys.modules[DevCluster.__module__].__file__ or "").resolve()
    if not imported.is_relative_to(REPO / "operator"):
        log(f"warning: edgeops imported from {imported}; run with PYTHONPATH={REPO}/operator")
    work = Path(tempfile.mkdtemp(prefix="edgeops-bench-operator-"))
    dev = DevCluster(name="bench-operator", home=work)
    results: list[Result] = []
    began = time.monotonic()
    try:
        with baseline_tree(args.baseline_ref, work) as baseline:
            subjects = [baseline, candidate_subject()]
            policy = work / "audit-policy.yaml"
            policy.write_text(audit_policy([s.user for s in subjects]))
            dev.up(with_operator=False, with_node=False, audit_policy=policy, report=log)
            api = config.new_client_from_config(config_file=str(dev.kubeconfig))
            for i, subject in enumerate(subjects):
                # The last one's objects go with the devcluster.
                results.append(measure(dev, api, subject, args, clean_up=i < len(subjects) - 1))
    finally:
        dev.down(report=log)
        if args.keep:
            log(f"state and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log(f"done in {time.monotonic() - began:.0f}s")
    if args.json:
        document = {
            "objects": args.objects,
            "namespaces": args.namespaces,
            "idle_seconds": args.idle_seconds,
            "probes": args.probes,
            "requests_method": "apiserver audit log, distinct requests of the operator's own "
            "client-certificate user received in the idle window",
            "results": [asdict(r) for r in results],
            "ratios": ratios(*results),
        }
        with contextlib.redirect_stdout(sys.stderr):
            print_table(results, args)  # for the person watching; stdout stays JSON
        print(json.dumps(document, indent=2))
    else:
        print_table(results, args)


if __name__ == "__main__":
    main()
