"""How many simulated devices one gateway pod holds on this machine, with the control plane
running.

    PYTHONPATH=operator .venv/bin/python -P benchmarks/fleet.py [--steps 1000,1500,2000]
        [--interval 30] [--window 60] [--ramp 60] [--warmup 900] [--home /tmp/bench-fleet]
        [--replay-scope cluster|replica] [--keep]

(``-P``: the script's directory holds ``operator.py``, which must not shadow the standard
library's ``operator`` module.)

What runs
    The devcluster (`edgeops.devcluster`, started or reused under ``--home``, stopped at the
    end unless ``--keep``) with the
    operator and the gateway pod from the Helm chart, as the tests run it. The benchmark
    publishes one EdgeModel (a tiny real ONNX classifier over the BasicMotions features,
    signed with the operator's key) and a bootstrap token, then runs
    ``edgeops fleet simulate`` as a separate process per step: N virtual devices (real
    agents: signed requests, A/B installs, ONNX Runtime inference on BasicMotions rows,
    telemetry every ``--interval`` seconds). Steps reuse the state directories, so the
    devices of the previous step are already enrolled and only the new ones enroll.

What is measured, per step, over ``--window`` seconds once every device of the step has
committed the model (or the warm-up timed out)
    * telemetry reports the gateway accepted (its ``edgeops_device_telemetry_reports_total``
      at ``/metrics``) per second, against the N / interval a fleet on time sends; the
      realised interval is N / rate;
    * gateway requests answered per second and their mean duration (its
      ``edgeops_gateway_request_duration_seconds``), and 429/5xx answers;
    * CPU (cores: CPU seconds / wall seconds) and RSS of the simulator process and of the
      gateway pod's process, and the machine's load.
    A step "keeps up" when the accepted reports reach 90 % of N / interval with no 5xx; the
    steps stop at the first that does not.

``--replay-scope replica`` sets the gateway pod's ``EDGEOPS_GATEWAY_REPLAY_SCOPE`` (one
Device write per change instead of per report; README, "Writes") and waits for the new pod:
run once with each to see what the per-report write costs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
# The test helpers publish signed versions exactly as the integration tests do.
sys.path.insert(0, str(REPO))

from tests.conftest import Cluster  # noqa: E402
from tests.integration.device_fleet import (  # noqa: E402
    CLASSES,
    Line,
    edge_model,
    onnx_classifier,
    operator_signing_key,
)

from edgeops.devcluster.cluster import DevCluster  # noqa: E402

# Label values hold braces (endpoint="/v1/devices/{namespace}/..."): up to the last one.
_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>.*)\})? (?P<value>[0-9.eE+\-]+|NaN)$")


def scrape(url: str) -> dict[str, float]:
    """Sums of the gateway's series by name (+ ``code`` class for requests)."""
    totals: dict[str, float] = {}
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        found = _SAMPLE.match(line)
        if found is None:
            continue
        name, labels, value = found["name"], found["labels"] or "", float(found["value"])
        if name == "edgeops_gateway_requests_total":
            code = re.search(r'code="(\d)', labels)
            name = f"{name}:{code.group(1) if code else '?'}xx"
        totals[name] = totals.get(name, 0.0) + value
    return totals


def gateway_process(url: str) -> psutil.Process:
    """The process listening on the gateway's port (the pod's process on the local node)."""
    port = int(url.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    raise SystemExit(f"no process listens on {port}")


def tree_cpu(proc: psutil.Process) -> float:
    """CPU seconds of ``proc`` and its children."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass
class Step:
    devices: int
    enrolled_s: float
    expected_rps: float
    reports_rps: float
    requests_rps: float
    mean_request_ms: float
    errors_4xx: float
    errors_5xx: float
    sim_cpu: float
    sim_rss_mb: float
    gw_cpu: float
    gw_rss_mb: float
    load: float

    @property
    def keeps_up(self) -> bool:
        return self.reports_rps >= 0.9 * self.expected_rps and self.errors_5xx == 0

    @property
    def interval(self) -> float:
        return self.devices / self.reports_rps if self.reports_rps else float("inf")


def committed(cluster: Cluster, ns: str) -> int:
    """Devices of ``ns`` that report running a model version."""
    items = cluster.get("devices", "-n", ns).get("items", [])
    return sum(1 for d in items if (d.get("status") or {}).get("version"))


def run_step(
    cluster: Cluster, ns: str, grants: list[str], trusted: dict[str, str], n: int, args: Any,
    state: Path,
) -> Step:  # fmt: skip
    gw = cluster.endpoints["gateway"]
    argv = [
        sys.executable, "-m", "edgeops", "fleet", "simulate", "--gateway", gw,
        "--namespace", ns, "--devices", str(n), *[a for t in grants for a in ("--token", t)],
        "--trust-key", json.dumps(trusted), "--interval", str(args.interval),
        "--ramp", str(args.ramp), "--state-dir", str(state), "--prefix", "bench",
        "--classes", ",".join(CLASSES),
    ]  # fmt: skip
    log = state.parent / f"simulate-{n}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator"), "TERM": "dumb"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    sim = psutil.Process(proc.pid)
    gateway = gateway_process(gw)
    started = time.monotonic()
    try:
        # Warm-up: every device enrolled and running the model (at most --warmup seconds),
        # so the window measures the steady cycle, not the enrollment and install wave.
        deadline = started + args.warmup
        done = 0
        while time.monotonic() < deadline:
            done = committed(cluster, ns)
            if done >= n:
                break
            assert proc.poll() is None, f"the simulator exited; see {log}"
            time.sleep(5)
        enrolled = time.monotonic() - started
        print(f"  {n} devices: {done} running a model after {enrolled:.0f} s", flush=True)
        time.sleep(args.interval)  # one more interval: every device in its steady cycle
        before, t0 = scrape(gw), time.monotonic()
        sim_cpu0, gw_cpu0 = tree_cpu(sim), tree_cpu(gateway)
        time.sleep(args.window)
        after, t1 = scrape(gw), time.monotonic()
        wall = t1 - t0
        sim_cpu, gw_cpu = (tree_cpu(sim) - sim_cpu0) / wall, (tree_cpu(gateway) - gw_cpu0) / wall

        def rate(name: str) -> float:
            return (after.get(name, 0.0) - before.get(name, 0.0)) / wall

        requests = sum(rate(f"edgeops_gateway_requests_total:{c}xx") for c in "12345")
        duration = rate("edgeops_gateway_request_duration_seconds_sum")
        count = rate("edgeops_gateway_request_duration_seconds_count")
        return Step(
            devices=n, enrolled_s=enrolled, expected_rps=n / args.interval,
            reports_rps=rate("edgeops_device_telemetry_reports_total"),
            requests_rps=requests, mean_request_ms=1000 * duration / count if count else 0.0,
            errors_4xx=rate("edgeops_gateway_requests_total:4xx") * wall,
            errors_5xx=rate("edgeops_gateway_requests_total:5xx") * wall,
            sim_cpu=sim_cpu, sim_rss_mb=tree_rss(sim) / 2**20,
            gw_cpu=gw_cpu, gw_rss_mb=tree_rss(gateway) / 2**20, load=os.getloadavg()[0],
        )  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def table(steps: list[Step], interval: float) -> str:
    head = (
        f"{'devices':>7} {'ready s':>7} {'reports/s':>9} {'want/s':>7} {'interval s':>10} "
        f"{'req/s':>6} {'req ms':>6} {'4xx':>5} {'5xx':>5} {'sim cpu':>7} {'sim MB':>7} "
        f"{'gw cpu':>6} {'gw MB':>6} {'load':>5} keeps up"
    )
    rows = [head]
    for s in steps:
        rows.append(
            f"{s.devices:>7} {s.enrolled_s:>7.0f} {s.reports_rps:>9.1f} {s.expected_rps:>7.1f} "
            f"{s.interval:>10.1f} {s.requests_rps:>6.1f} {s.mean_request_ms:>6.1f} "
            f"{s.errors_4xx:>5.0f} {s.errors_5xx:>5.0f} {s.sim_cpu:>7.2f} {s.sim_rss_mb:>7.0f} "
            f"{s.gw_cpu:>6.2f} {s.gw_rss_mb:>6.0f} {s.load:>5.1f} {'yes' if s.keeps_up else 'NO'}"
        )
    rows.append(f"(report interval asked: {interval:.0f} s; cpu in cores over the window)")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1000,1500,2000")
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--ramp", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=900.0)
    parser.add_argument("--home", type=Path, default=Path("/tmp/bench-fleet"))
    parser.add_argument("--name", default="bench")
    parser.add_argument("--replay-scope", choices=("cluster", "replica"), default="cluster")
    parser.add_argument("--keep", action="store_true", help="leave the devcluster running")
    args = parser.parse_args()
    dev = DevCluster(name=args.name, home=args.home)
    dev.up(with_operator=True)
    try:
        measure(dev, args)
    finally:
        # A devcluster left running (etcd, API server, operator, gateway, 1000 devices'
        # Device objects) would load the machine of whatever runs next.
        if not args.keep:
            dev.down()


def measure(dev: DevCluster, args: argparse.Namespace) -> None:
    """Publishes the model, runs the steps and prints the table (see the module docstring)."""
    cluster = Cluster(dev)
    gateway = ("-n", "edgeops-system", "deployment/edgeops-gateway")
    cluster.kubectl("set", "env", *gateway, f"EDGEOPS_GATEWAY_REPLAY_SCOPE={args.replay_scope}")
    cluster.kubectl("rollout", "status", *gateway, "--timeout=180s")
    print(f"gateway replay scope: {args.replay_scope}", flush=True)
    ns = cluster.namespace("bench-fleet")
    key, trusted = operator_signing_key(cluster)
    line = Line.apply(cluster, ns, edge_model("motion-classifier"), key)
    line.publish(1, onnx_classifier(seed=1))
    steps = [int(s) for s in args.steps.split(",")]
    # One token per 100 devices: each use is a compare-and-swap on the token's Secret, and
    # a thousand devices on one token mostly wait for each other (409, retried).
    per_token = 100
    grants = [
        subprocess.run(
            [sys.executable, "-m", "edgeops", "device", "token", "create", "-n", ns,
             "--auto-approve", "--max-uses", str(per_token), "--ttl", "24h",
             "--labels", "edgeops.dev/model=motion-classifier"],
            env={**os.environ, **cluster.env, "KUBECONFIG": cluster.kubeconfig},
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]
        for _ in range(-(-max(steps) // per_token))
    ]  # fmt: skip
    state = args.home / f"fleet-{uuid.uuid4().hex[:6]}" / "devices"
    state.mkdir(parents=True)
    results: list[Step] = []
    for n in steps:
        print(f"step: {n} devices", flush=True)
        step = run_step(cluster, ns, grants, trusted, n, args, state)
        results.append(step)
        print(table(results, args.interval), flush=True)
        if not step.keeps_up:
            break
    print()
    print(table(results, args.interval))


if __name__ == "__main__":
    main()
