"""Fleet gateway throughput and latency of signed telemetry reports, against a bare ASGI
endpoint measured on the same machine in the same run.

    PYTHONPATH=operator .venv/bin/python benchmarks/gateway.py [--devices 64]
        [--concurrency 32] [--seconds 20] [--warmup 5] [--rounds 1] [--json] [--keep]

What runs
    One devcluster of its own (`edgeops.devcluster`, name ``bench-gateway`` in a temporary
    home: etcd, kube-apiserver, kube-controller-manager, MinIO, Prometheus; no operator and
    no local node, so nothing else runs). In it, namespace ``bench-gw`` holds EdgeModel
    ``bench-model`` whose version 1 is current and has a reference profile in S3 (two
    numeric features, one categorical, two classes), and ``--devices`` N approved Devices
    with pinned Ed25519 keys (``spec.identity``, no enrollment round trips). Two servers are
    then measured one after the other, each a subprocess on a free port of 127.0.0.1:

    * gateway: ``python -m edgeops gateway run`` with the devcluster's settings and the
      defaults of every gateway setting (``--cache-seconds`` sets the 2 s cache of bundle
      manifests and Datasets)
      except the per-device rate limit, raised so the load generator is never refused;
    * gw-replica: the same gateway with ``EDGEOPS_GATEWAY_REPLAY_SCOPE=replica``: report
      sequences kept in memory, a Device written only when a report changes it or its
      lastSeen is due (one replica only; README, "Writes"), so the difference to
      ``gateway`` is what the per-report compare-and-swap write costs;
    * baseline: a bare ASGI callable that reads the request body and answers 200 ``{}``,
      served by uvicorn with the gateway's own options
      (:data:`edgeops.gateway.server.UVICORN_OPTIONS`: log level, proxy headers).

The load
    ``--concurrency`` C asyncio workers in this process, each with one keep-alive HTTP/1.1
    connection (raw asyncio streams: an ``httpx.AsyncClient`` turned out ten times slower
    than the bare endpoint it was to measure, see :func:`load`). Worker i owns devices i,
    i+C, ... (N >= C), so each device's report ``sequence`` rises monotonically and no two
    requests of a device race. Each
    request is a fresh ``POST /v1/devices/bench-gw/<device>/telemetry``: a report with
    inference counts, latency and confidence histograms, predictions and the three
    features' bin counts (about 700 bytes of JSON), signed as an agent signs it (RFC 9421,
    new nonce, ``created`` = now). The baseline gets exactly the same signed requests, so
    client-side cost (JSON, signing, httpx) is the same on both sides and the ratios
    compare servers. ``--warmup`` seconds of load come first and are not counted (caches,
    connections, the profile read from S3); then ``--seconds`` of counted load.

The numbers
    req/s        answered requests per second in the counted window (a non-200 answer is
                 counted under "errors" and not in req/s or the percentiles).
    p50/p99 ms   client-side latency from just before the request is sent to the whole
                 answer read (signing excluded), linearly interpolated percentiles.
    server CPU   user+system CPU seconds of the server process per second of window
                 (1.0 = one core busy), and CPU ms per request.
    client CPU   this process's CPU per second of window: near 1.0 means the load
                 generator, not the server, was the limit (then req/s is a lower bound
                 and the ratio understates the gap... or overstates it for the baseline).
    ratios       gateway / baseline: req/s (higher is better), p50, p99 and CPU ms per
                 request (lower is better).
    ``--rounds`` R > 1 runs baseline, gateway and gw-replica R times and reports each round.

Caveats: one machine, the load generator on the same cores as the server (with 2 cores a
server can use about one while the client uses the other); absolute figures depend on the
machine, ratios much less. The gateway's per-request work at steady state is CPU
(signature, digest, pydantic, the telemetry collector) plus, since reports carry a sequence
stored in the Device so that replay protection holds across replicas, one compare-and-swap
write of the Device's status per report (Devices, EdgeModels and FleetRollouts are read
from watch caches, with no API call); the API server and etcd share the machine.
"""

from __future__ import annotations

import sys

# benchmarks/operator.py shares its name with the standard library's `operator`, and a
# script's own directory comes first on sys.path: move it last before anything imports it.
sys.path.sort(key=lambda entry: entry.rstrip("/").endswith("/benchmarks"))

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edgeops.api.common import format_time
from edgeops.api.wire import CONFIDENCE_BUCKETS, LATENCY_BUCKETS_SECONDS
from edgeops.devcluster.cluster import DevCluster
from edgeops.httpsig import sign_request
from edgeops.store import ArtifactStore, StoreConfig

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench-gw"
MODEL = "bench-model"
PROFILE: dict[str, Any] = {
    "format": 1,
    "rows": 1000,
    "features": {
        "temp": {"kind": "numeric", "edges": [10.0, 20.0, 30.0], "counts": [250] * 4,
                 "count": 1000, "missing": 0},
        "humidity": {"kind": "numeric", "edges": [0.2, 0.4, 0.6, 0.8], "counts": [200] * 5,
                     "count": 1000, "missing": 0},
        "site": {"kind": "categorical", "counts": {"a": 600, "b": 400}, "count": 1000,
                 "missing": 0},
    },
    "label": {"column": "y", "distribution": {"ok": 900, "fault": 100}},
    "slices": {},
    "splits": {"train": 1000},
}  # fmt: skip


def log(message: str) -> None:
    print(f"[bench-gateway] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the baseline server ------------------------------------------------------------------


async def bare_endpoint(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """The baseline: reads the whole body, answers 200 ``{}`` (what any HTTP endpoint
    costs with uvicorn, before any application work)."""
    if scope["type"] == "lifespan":
        while True:
            event = (await receive())["type"]
            if event == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = bool(message.get("more_body"))
    body = b"{}"
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_baseline(port: int) -> None:
    """Serves :func:`bare_endpoint` with the gateway's uvicorn options (blocks)."""
    import uvicorn

    from edgeops.gateway.server import UVICORN_OPTIONS

    uvicorn.run(bare_endpoint, host="127.0.0.1", port=port, **UVICORN_OPTIONS)


# --- the fleet ----------------------------------------------------------------------------


@dataclass
class BenchDevice:
    name: str
    key: Ed25519PrivateKey
    sequence: int = 0

    @property
    def public_b64(self) -> str:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()


def set_up_fleet(dev: DevCluster, count: int) -> list[BenchDevice]:
    """The namespace, the EdgeModel with a current version 1 and its profile, and ``count``
    approved Devices with pinned keys."""
    env = dev.env()
    store = ArtifactStore(
        StoreConfig(
            endpoint=env["EDGEOPS_S3_ENDPOINT"],
            access_key=env["EDGEOPS_S3_ACCESS_KEY"],
            secret_key=env["EDGEOPS_S3_SECRET_KEY"],
            bucket=env["EDGEOPS_S3_BUCKET"],
        )
    )
    blob = store.put_blob(json.dumps(PROFILE).encode())
    dev.kubectl("create", "namespace", NAMESPACE)
    model = {
        "apiVersion": "edgeops.dev/v1alpha1",
        "kind": "EdgeModel",
        "metadata": {"name": MODEL, "namespace": NAMESPACE},
        "spec": {
            "training": {"datasetRef": {"name": "absent"}, "exports": ["onnx"]},
            "targets": [{"name": "pi", "targetType": "linux", "format": "onnx"}],
            "retrain": {"onNewDatasetVersion": False},
        },
    }
    dev.kubectl("apply", "-f", "-", input=json.dumps(model))
    profile = {"uri": f"s3://{store.bucket}/{blob.key}", "size": blob.size,
               "sha256": blob.sha256, "format": "reference-profile"}  # fmt: skip
    status = {
        "currentVersion": 1,
        "latestVersion": 1,
        "versions": [{"number": 1, "trainingRun": f"{MODEL}-1", "state": "Approved",
                      "created": format_time(datetime.now(UTC)), "artifacts": [profile]}],
    }  # fmt: skip
    dev.kubectl(
        "patch", "edgemodel", MODEL, "-n", NAMESPACE, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip
    devices = [BenchDevice(f"dev-{i:04d}", Ed25519PrivateKey.generate()) for i in range(count)]
    items = [
        {
            "apiVersion": "edgeops.dev/v1alpha1",
            "kind": "Device",
            "metadata": {
                "name": d.name,
                "namespace": NAMESPACE,
                "labels": {"edgeops.dev/model": MODEL},
            },
            "spec": {
                "targetType": "linux",
                "approval": "Approved",
                "identity": {"publicKey": d.public_b64},
            },
        }
        for d in devices
    ]
    dev.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                      "items": items}))  # fmt: skip
    return devices


def split(total: int, parts: int, rng: random.Random) -> list[int]:
    """``parts`` random non-negative counts that add up to ``total`` (a histogram of
    ``total`` observations: the gateway refuses one that counts more than the report's
    inferences)."""
    cuts = sorted(rng.randrange(total + 1) for _ in range(parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]


def report_body(device: BenchDevice) -> bytes:
    """The next telemetry report of ``device``: plausible deltas of one minute."""
    device.sequence += 1
    rng = random.Random(device.sequence)
    inferences = 600 + rng.randrange(100)
    return json.dumps(
        {
            "sequence": device.sequence,
            "model": MODEL,
            "version": 1,
            "intervalSeconds": 60,
            "inferences": inferences,
            "errors": rng.randrange(3),
            "latencySeconds": {
                "counts": split(inferences, len(LATENCY_BUCKETS_SECONDS) + 1, rng),
                "sum": 1.5,
            },
            "predictions": {"ok": inferences - 50, "fault": 50},
            "confidence": {"counts": split(inferences, len(CONFIDENCE_BUCKETS) + 1, rng)},
            "features": {
                "temp": {"counts": split(inferences, 4, rng)},
                "humidity": {"counts": split(inferences - 1, 5, rng), "missing": 1},
                "site": {"categories": {"a": 300, "b": 290, "c": 10}},
            },
            "feedback": {"correct": 9, "incorrect": 1},
        }
    ).encode()


# --- servers ------------------------------------------------------------------------------


@contextmanager
def server(
    label: str, argv: list[str], env: dict[str, str], port: int, work: Path
) -> Iterator[int]:
    """Runs ``argv`` until it answers on ``port``; yields its pid. Output goes to a file
    (uvicorn's access log included, as in production: it is part of what a request costs)."""
    out = (work / f"{label}.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            # Ready (the gateway's watch caches synced), not only listening.
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{label} did not start; see {work}/{label}.log")
            time.sleep(0.2)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()


def cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the load -----------------------------------------------------------------------------


@dataclass
class Result:
    server: str
    round: int
    requests: int
    errors: int
    error_kinds: dict[str, int]
    seconds: float
    req_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    server_cpu_ms_per_req: float
    client_cpu: float


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def request_bytes(device: BenchDevice) -> bytes:
    """The next signed telemetry request of ``device`` as HTTP/1.1 bytes."""
    path = f"/v1/devices/{NAMESPACE}/{device.name}/telemetry"
    body = report_body(device)
    signed = sign_request(device.key, f"{NAMESPACE}/{device.name}", "POST", path, body,
                          created=int(time.time()))  # fmt: skip
    fields = {"Host": "127.0.0.1", "Content-Type": "application/json",
              "Content-Length": str(len(body)), **signed}  # fmt: skip
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Sends one request on a keep-alive connection; the answer's status and body."""
    writer.write(request)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status, length = int(status_line.split()[1]), 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def load(
    port: int, devices: list[BenchDevice], concurrency: int, warmup: float, seconds: float,
    pid: int, label: str, round_: int,
) -> Result:  # fmt: skip
    """Warm-up, then ``seconds`` of counted load by ``concurrency`` workers.

    Each worker holds one keep-alive HTTP/1.1 connection and speaks the protocol with
    asyncio streams. Not httpx: an ``httpx.AsyncClient`` managed about 90 requests per
    second against the bare endpoint on the machine this was written on, where raw streams
    managed over 1000, so the benchmark would have measured its own client."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counting = False
    stop = False

    async def worker(owned: list[BenchDevice]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = 0
        while not stop:
            device = owned[i % len(owned)]
            i += 1
            request = request_bytes(device)
            start = time.perf_counter()
            try:
                status, answer = await exchange(reader, writer, request)
                ok, kind = status == 200, str(status)
                if not ok:
                    kind += " " + str(json.loads(answer or b"{}").get("reason", ""))
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
                ok, kind = False, type(exc).__name__
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            elapsed = time.perf_counter() - start
            if counting:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors[kind] = errors.get(kind, 0) + 1
        writer.close()

    tasks = [asyncio.create_task(worker(devices[w::concurrency])) for w in range(concurrency)]
    await asyncio.sleep(warmup)
    counting = True
    began, cpu0, client0 = time.perf_counter(), cpu_seconds(pid), time.process_time()
    await asyncio.sleep(seconds)
    counting = False
    window = time.perf_counter() - began
    server_cpu = cpu_seconds(pid) - cpu0
    client_cpu = time.process_time() - client0
    stop = True
    await asyncio.gather(*tasks)
    count = len(latencies)
    return Result(
        server=label,
        round=round_,
        requests=count,
        errors=sum(errors.values()),
        error_kinds=errors,
        seconds=round(window, 2),
        req_per_s=count / window,
        p50_ms=1000 * percentile(latencies, 0.50),
        p99_ms=1000 * percentile(latencies, 0.99),
        server_cpu=server_cpu / window,
        server_cpu_ms_per_req=1000 * server_cpu / count if count else float("nan"),
        client_cpu=client_cpu / window,
    )


# --- main ---------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=64, help="signed devices (>= concurrency)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--seconds", type=float, default=20, help="counted load per server")
    parser.add_argument("--warmup", type=float, default=5, help="uncounted load first")
    parser.add_argument("--rounds", type=int, default=1, help="baseline/gateway alternations")
    parser.add_argument(
        "--cache-seconds",
        type=float,
        help="the gateway's EDGEOPS_GATEWAY_CACHE_SECONDS (default: its default, 2): how long "
        "bundle manifests and Datasets are kept",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--keep", action="store_true", help="keep the devcluster's state dir")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.devices = max(args.devices, args.concurrency)
    return args


def ratios(baseline: Result, gateway: Result) -> dict[str, float]:
    return {
        "req_per_s": gateway.req_per_s / baseline.req_per_s,
        "p50_ms": gateway.p50_ms / baseline.p50_ms,
        "p99_ms": gateway.p99_ms / baseline.p99_ms,
        "server_cpu_ms_per_req": gateway.server_cpu_ms_per_req / baseline.server_cpu_ms_per_req,
    }


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    cache = "default" if args.cache_seconds is None else f"{args.cache_seconds:g} s"
    print(f"signed telemetry reports: {args.devices} devices, {args.concurrency} in flight, "
          f"gateway read cache {cache}, "
          f"{args.warmup:g} s warm-up + {args.seconds:g} s counted per server, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    header = ("server", "round", "req/s", "p50 ms", "p99 ms", "server CPU", "CPU ms/req",
              "client CPU", "errors")  # fmt: skip
    print("{:<11}{:>6}{:>9}{:>9}{:>9}{:>12}{:>12}{:>12}{:>8}".format(*header))
    for r in results:
        print(f"{r.server:<11}{r.round:>6}{r.req_per_s:>9.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
              f"{r.server_cpu:>12.2f}{r.server_cpu_ms_per_req:>12.3f}{r.client_cpu:>12.2f}"
              f"{r.errors:>8}")  # fmt: skip
    for r in results:
        if r.error_kinds:
            print(f"  {r.server} round {r.round} errors: {r.error_kinds}")
    for round_ in sorted({r.round for r in results}):
        pair = {r.server: r for r in results if r.round == round_}
        for subject in ("gateway", "gw-replica"):
            q = ratios(pair["baseline"], pair[subject])
            print(f"round {round_} {subject}/baseline: req/s x{q['req_per_s']:.3f}, "
                  f"p50 x{q['p50_ms']:.2f}, p99 x{q['p99_ms']:.2f}, "
                  f"server CPU per request x{q['server_cpu_ms_per_req']:.2f}")  # fmt: skip


def main() -> None:
    args = parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return
    work = Path(tempfile.mkdtemp(prefix="edgeops-bench-gateway-"))
    dev = DevCluster(name="bench-gateway", home=work)
    results: list[Result] = []
    began = time.monotonic()
    try:
        dev.up(with_operator=False, with_node=False, report=log)
        devices = set_up_fleet(dev, args.devices)
        log(f"{len(devices)} devices ready")
        env = {**os.environ, **dev.env(), "PYTHONPATH": str(REPO / "operator"),
               "EDGEOPS_GATEWAY_REQUESTS_PER_MINUTE": "100000"}  # fmt: skip
        env.pop("KUBERNETES_SERVICE_HOST", None)
        if args.cache_seconds is not None:
            env["EDGEOPS_GATEWAY_CACHE_SECONDS"] = str(args.cache_seconds)
        gateway = [sys.executable, "-m", "edgeops", "gateway", "run", "--port"]
        subjects: dict[str, tuple[list[str], dict[str, str]]] = {
            "baseline": ([sys.executable, str(Path(__file__).resolve()), "--serve-baseline"], env),
            "gateway": (gateway, env),
            "gw-replica": (gateway, {**env, "EDGEOPS_GATEWAY_REPLAY_SCOPE": "replica"}),
        }
        for round_ in range(1, args.rounds + 1):
            for label, (argv, server_env) in subjects.items():
                port = free_port()
                with server(label, [*argv, str(port)], server_env, port, work) as pid:
                    log(f"round {round_}: {label} on port {port}, loading")
                    result = asyncio.run(load(port, devices, args.concurrency, args.warmup,
                                              args.seconds, pid, label, round_))  # fmt: skip
                    results.append(result)
                    log(f"round {round_}: {label} {result.req_per_s:.0f} req/s, "
                        f"p99 {result.p99_ms:.1f} ms, {result.errors} errors")  # fmt: skip
    finally:
        dev.down(report=log)
        if args.keep:
            log(f"state and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log(f"done in {time.monotonic() - began:.0f}s")
    by = {(r.round, r.server): r for r in results}
    if args.json:
        print(json.dumps({"results": [asdict(r) for r in results],
                          "ratios": [{subject: ratios(by[(n, "baseline")], by[(n, subject)])
                                      for subject in ("gateway", "gw-replica")}
                                     for n in range(1, args.rounds + 1)]}, indent=2))  # fmt: skip
    else:
        print_table(results, args)
    if statistics.fmean(r.errors for r in results if r.server != "baseline") > 0:
        log("warning: the gateway refused some reports (see errors); fix before trusting ratios")


if __name__ == "__main__":
    main()
