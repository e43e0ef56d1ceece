"""`edgeops dev demo`: the closed loop of the sensor-fleet example on the local control plane.

It applies the example's Dataset and EdgeModel (``examples/sensor-fleet/01-02``) into
namespace ``sensor-fleet``, shortens the example's production pace (days of windows and
cooldowns) to minutes with one printed patch (:data:`DEMO_PACE`), enrolls a simulated fleet
(:mod:`edgeops.device.simulator`, real agents in this process, Linux and MCU, with the
hardware labels the model targets) and follows the loop step by step:

BasicMotions → v1 trained, gated, signed → Auto rollout in waves → data drift injected on
a share of the devices → the drift monitor measures it (numbers) → the devices' random
samples become a new dataset version → a TrainingRun for ``Drift`` → v2 gated, signed,
rolled out → the drift clears on v2.

Every change of an object's phase or Ready condition is printed with the operator's
message; a fleet line shows devices by version and phase whenever it changes. The
example's other files (an experiment TrainingRun, a FleetRollout made by hand, three
Devices with pinned keys and no agents) are not part of the loop and are not applied.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from edgeops.api.conditions import get_condition
from edgeops.devcluster.cluster import SYSTEM_NAMESPACE, DevCluster, DevClusterError, repo_root

Reporter = Callable[[str], None]
DEMO_NAMESPACE: Final = "sensor-fleet"
MODEL: Final = "motion-classifier"
#: The example files the loop needs: the datasets and the model line.
FILES: Final = ("01-datasets.yaml", "02-edgemodel.yaml")
#: Labels the bootstrap token gives every enrolled device: the example's rollout selector
#: (``fleet: vibration-sensors``) and the model the gateway assigns.
DEVICE_LABELS: Final = {"fleet": "vibration-sensors", "edgeops.dev/model": MODEL}
#: ``spec.hardware`` per target type: the example model's targets (pi4, esp32).
HARDWARE: Final = {"linux": "raspberry-pi-4", "mcu": "esp32-s3"}

#: The merge patch that turns the example's production pace into a demo's: drift measured
#: over 30 s every 5 s (not 6 h), a cooldown of 1 minute (not 12 h), 5 % of inputs
#: sampled to the inbox, rollout waves with 10 s pauses and one analysis check whose
#: latency budget allows for 100 simulated devices sharing two cores, and relative gates
#: that do not compare latencies measured on a loaded machine.
DEMO_PACE: Final[dict[str, Any]] = {
    "spec": {
        "retrain": {
            "cooldown": "1m",
            "onDrift": {
                "window": "30s",
                "interval": "5s",
                "minSamples": 300,
            },
        },
        # A plain random share: the field data then mirrors the fleet (drifted devices and
        # the others) rather than the inputs the model got wrong.
        "sampling": {
            "confidenceBelow": 0,
            "misclassified": False,
            "randomShare": 0.05,
            "maxRowsPerHour": 5000,
        },
        # Relative gates against v1 without the per-sample latency one: latencies measured
        # while 100 simulated devices share two cores swing by more than its 20 %.
        "gates": {"relative": [{"metric": "accuracy", "maxDegradation": 0.05, "mode": "absolute"}]},
        "promotion": {
            "rolloutTemplate": {
                "steps": [
                    {"percent": 10, "pause": {"duration": "10s"}, "analysis": True},
                    {"percent": 50, "pause": {"duration": "10s"}},
                    {"percent": 100},
                ],
                "analysis": {
                    "interval": "30s",
                    # Devices enroll and install while the first step runs (minutes on a
                    # loaded machine); until the canaries report, measurements are
                    # Inconclusive, which pauses the rollout beyond this limit.
                    "inconclusiveLimit": 20,
                    "metrics": [
                        {
                            "name": "p95_latency_ms",
                            "query": "1000 * histogram_quantile(0.95, sum by (le) (rate("
                            "edgeops_device_inference_latency_seconds_bucket{"
                            'namespace="{{namespace}}",model="{{model}}",'
                            'cohort="{{cohort}}"}[1m])))',
                            "op": "<=",
                            "threshold": 250,
                            # Inferences of the canary cohort counted over the
                            # interval (10 devices; scrapes lag on a loaded machine).
                            "minSamples": 20,
                        }
                    ],
                },
                "maxUpdatesPerMinute": 600,
            }
        },
    }
}


@dataclass(frozen=True)
class DemoOptions:
    """The simulated fleet and the injected drift."""

    devices: int = 100
    mcu_share: float = 0.3
    #: Seconds between a device's cycles (inference, telemetry, samples).
    interval_seconds: float = 5.0
    drift_feature: str = "acc_y_max"
    #: Share of devices whose drift_feature moves (picked by a hash of the names).
    drift_share: float = 0.4
    #: The shift, in the feature's standard deviations over the recordings.
    drift_sigmas: float = 4.0
    timeout: float = 1800.0
    #: Where the demo writes ``edgeops report``'s page and plots at the end.
    report_dir: Path = Path("report-motion-classifier")


def _ready(obj: dict[str, Any]) -> dict[str, Any]:
    return get_condition((obj.get("status") or {}).get("conditions"), "Ready") or {}


def describe(obj: dict[str, Any]) -> str:
    """One line for an EdgeOps object: kind/name, phase or version, Ready and its message."""
    status = obj.get("status") or {}
    ready = _ready(obj)
    phase = status.get("phase") or (
        f"v{status['currentVersion']}" if status.get("currentVersion") else ""
    )
    if obj["kind"] == "FleetRollout" and status.get("percent") is not None:
        phase = f"{phase} {status['percent']}%"
    head = f"{obj['kind']}/{obj['metadata']['name']}"
    state = " ".join(p for p in (phase, f"Ready={ready.get('status', '-')}") if p)
    message = ready.get("message", "")
    return f"{head:<45} {state:<26} {message}"


class _Fleet:
    """The simulated fleet running in its own thread and event loop until :meth:`stop`."""

    def __init__(self, simulation: Any) -> None:
        self.simulation = simulation
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="demo-fleet", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.simulation.run(self._stop))
        except BaseException as exc:  # reported by the demo
            self.error = exc
        finally:
            self._loop.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(60)

    def line(self) -> str:
        """Devices by version and phase, e.g. ``v1 Running 60 (mcu 18) | - Enrolling 40``."""
        parts = []
        by: dict[tuple[str, str], list[str]] = {}
        for view in self.simulation.views:
            key = (f"v{view.version}" if view.version is not None else "-", view.phase)
            by.setdefault(key, []).append(view.target_type)
        for (version, phase), targets in sorted(by.items()):
            mcu = targets.count("mcu")
            parts.append(f"{version} {phase} {len(targets)}" + (f" (mcu {mcu})" if mcu else ""))
        return " | ".join(parts)

    def all_on(self, version: int) -> bool:
        views = self.simulation.views
        return all(v.version == version and v.phase == "Running" for v in views)


class _Story:
    """What the demo has seen so far, printed once per change."""

    def __init__(self, cluster: DevCluster, report: Reporter) -> None:
        self.cluster = cluster
        self.report = report
        self.started = time.monotonic()
        self.seen: dict[str, str] = {}
        self.objects: list[dict[str, Any]] = []
        self.fleet_line = ""
        self.fleet_printed = 0.0

    def say(self, text: str) -> None:
        self.report(f"[{time.monotonic() - self.started:5.0f}s] {text}")

    def poll(self, fleet: _Fleet | None) -> None:
        out = self.cluster.kubectl("get", "edgeops", "-n", DEMO_NAMESPACE, "-o", "json")
        self.objects = json.loads(out.stdout)["items"]
        for obj in self.objects:
            if obj["kind"] == "Device":
                continue  # the fleet line counts them
            key = f"{obj['kind']}/{obj['metadata']['name']}"
            line = describe(obj)
            if self.seen.get(key) != line:
                self.seen[key] = line
                self.say(line)
        if fleet is not None:
            line = fleet.line()
            now = time.monotonic()
            if line != self.fleet_line and now - self.fleet_printed >= 5:
                self.fleet_line, self.fleet_printed = line, now
                self.say(f"fleet  {line}")

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        return {}

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def model_status(self) -> dict[str, Any]:
        return dict(self.get("EdgeModel", MODEL).get("status") or {})


def _wait(
    story: _Story,
    fleet: _Fleet | None,
    deadline: float,
    what: str,
    check: Callable[[], Any],
) -> Any:
    while time.monotonic() < deadline:
        story.poll(fleet)
        if fleet is not None and fleet.error is not None:
            raise DevClusterError(f"the simulated fleet failed: {fleet.error!r}")
        found = check()
        if found:
            return found
        time.sleep(2)
    raise DevClusterError(f"the demo timed out waiting for {what}")


def _rollout_done(story: _Story, version: int) -> dict[str, Any] | None:
    for rollout in story.of_kind("FleetRollout"):
        status = rollout.get("status") or {}
        if rollout["spec"]["version"] == version:
            if status.get("phase") in ("Aborted", "RolledBack"):
                raise DevClusterError(f"{describe(rollout)}")
            if status.get("phase") == "Succeeded":
                return rollout
    return None


def _drift_line(drift: dict[str, Any]) -> str:
    worst = next(
        (f for f in drift.get("features") or [] if f["feature"] == drift.get("worstFeature")),
        None,
    )
    if worst is None:
        return f"v{drift.get('version')}: {drift.get('verdict')}: {drift.get('reason', '')}"
    return (
        f"v{drift['version']} over {drift.get('window')}: {drift['verdict']}, worst feature "
        f"{worst['feature']}: {worst['method']} {worst.get('statistic', float('nan')):.3f} vs "
        f"calibrated threshold {worst.get('threshold', float('nan')):.3f}, p "
        f"{worst.get('pValue', float('nan')):.2g}, {worst['samples']} samples"
    )


def _fresh_namespace(cluster: DevCluster, story: _Story) -> None:
    if cluster.kubectl("get", "namespace", DEMO_NAMESPACE, check=False).returncode == 0:
        story.say(f"deleting namespace {DEMO_NAMESPACE} of an earlier demo, with its data")
        # The example keeps a deleted Dataset's data (deletionPolicy Retain): the earlier
        # run's field samples would be in the new run's first version.
        out = cluster.kubectl("get", "datasets.edgeops.dev", "-n", DEMO_NAMESPACE, "-o", "name")
        for dataset in out.stdout.split():
            cluster.kubectl(
                "patch", dataset, "-n", DEMO_NAMESPACE, "--type=merge",
                "-p", json.dumps({"spec": {"governance": {"deletionPolicy": "Delete"}}}),
            )  # fmt: skip
        cluster.kubectl("delete", "namespace", DEMO_NAMESPACE, "--timeout=300s")
    cluster.kubectl("create", "namespace", DEMO_NAMESPACE)


def _trusted_keys(cluster: DevCluster) -> dict[str, str]:
    """The public keys the operator publishes in ConfigMap edgeops-signing: what the
    simulated devices are told to trust. The operator writes it when it first signs; the
    demo's devices enroll before v1 exists, so the demo has it written now, by the
    operator's own code with the operator's settings (the signing key Secret is created
    if absent, exactly as the operator would)."""
    from edgeops.controllers.signing_key import publish_public_key

    with cluster.environment():
        publish_public_key()
    out = cluster.kubectl(
        "get", "configmap", "edgeops-signing", "-n", SYSTEM_NAMESPACE, "-o", "json"
    )
    keys = json.loads(json.loads(out.stdout)["data"]["publicKeys.json"])
    return {str(k): str(v) for k, v in keys.items()}


def _tokens(cluster: DevCluster, devices: int) -> list[str]:
    """Bootstrap tokens for ``devices`` enrollments, approved on enrollment: one per 25
    devices, since each use is a compare-and-swap on its token's Secret."""
    count = max(1, -(-devices // 25))
    return [_token(cluster, -(-devices // count)) for _ in range(count)]


def _token(cluster: DevCluster, devices: int) -> str:
    """A bootstrap token for ``devices`` enrollments, approved on enrollment."""
    from datetime import UTC, datetime, timedelta

    from edgeops.gateway.tokens import new_token, token_data

    token, secret = new_token()
    data = token_data(
        token,
        expires_at=datetime.now(UTC) + timedelta(hours=2),
        max_uses=devices,
        labels=dict(DEVICE_LABELS),
        auto_approve=True,
    )
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret,
            "labels": {
                "edgeops.dev/bootstrap-token": "true",
                "app.kubernetes.io/managed-by": "edgeops",
            },
        },
        "stringData": data,
    }
    cluster.kubectl("apply", "-n", DEMO_NAMESPACE, "-f", "-", input=json.dumps(body))
    return token


def run_demo(
    cluster: DevCluster,
    examples: Path | None = None,
    options: DemoOptions | None = None,
    report: Reporter = print,
) -> bool:
    """Runs the loop (module docstring); True when the drift cleared on the retrained
    version. Raises :class:`DevClusterError` when a step does not happen in time."""
    from edgeops.device.simulator import DataDrift, Simulation, SimulationConfig, load_rows

    options = options or DemoOptions()
    examples = examples or repo_root() / "examples" / "sensor-fleet"
    story = _Story(cluster, report)
    deadline = time.monotonic() + options.timeout
    _fresh_namespace(cluster, story)
    for name in FILES:
        applied = cluster.kubectl("apply", "-n", DEMO_NAMESPACE, "-f", str(examples / name))
        for line in applied.stdout.splitlines():
            story.say(f"applied {line} ({name})")
    cluster.kubectl(
        "patch", "edgemodel", MODEL, "-n", DEMO_NAMESPACE, "--type=merge",
        "-p", json.dumps(DEMO_PACE),
    )  # fmt: skip
    story.say(
        "demo pace: drift window 30s every 5s, cooldown 1m, 5% of inputs sampled, rollout "
        "waves 10% (analysis) / 50% / 100% with 10 s pauses, relative gates: accuracy "
        "within 5 points of v1 (no latency gate on a shared machine)"
    )
    trusted = _trusted_keys(cluster)
    story.say(
        f"devices trust the operator's signing keys {', '.join(sorted(trusted))} (ConfigMap "
        f"{SYSTEM_NAMESPACE}/edgeops-signing)"
    )
    rows = load_rows("builtin:basic-motions")
    state = cluster.dir / "demo-fleet"
    shutil.rmtree(state, ignore_errors=True)
    config = SimulationConfig(
        gateway=cluster.endpoints()["gateway"], namespace=DEMO_NAMESPACE,
        devices=options.devices, token=_tokens(cluster, options.devices),
        trusted_keys=trusted, rows=rows, state_root=state,
        classes=sorted(set(rows.labels or [])), prefix="sensor", mcu_share=options.mcu_share,
        interval_seconds=options.interval_seconds, ramp_seconds=20.0,
        hardware=[HARDWARE["linux"]],
        mcu_hardware=[HARDWARE["mcu"]],
    )  # fmt: skip
    fleet = _Fleet(Simulation(config))
    mcu = sum(v.target_type == "mcu" for v in fleet.simulation.views)
    story.say(
        f"simulated fleet: {options.devices} devices ({options.devices - mcu} linux "
        f"{HARDWARE['linux']}, {mcu} mcu {HARDWARE['mcu']}), a cycle every "
        f"{options.interval_seconds:g}s, enrolling with a bootstrap token"
    )
    # The agents' retry warnings (a busy token at enrollment, 429s) would drown the story;
    # what they do shows in the fleet line.
    agents = logging.getLogger("edgeops.device")
    level = agents.level
    agents.setLevel(logging.ERROR)
    fleet.start()
    try:
        return _loop(story, fleet, options, rows, deadline, DataDrift)
    finally:
        fleet.stop()
        agents.setLevel(level)
        story.say(f"fleet stopped: {fleet.line()}")
        _write_report(cluster, story, options.report_dir)


def _write_report(cluster: DevCluster, story: _Story, directory: Path) -> None:
    """``edgeops report motion-classifier`` of what just happened (drift per feature over
    time, rollouts per step, versions and lineage); a failure is told, never fatal."""
    import datetime as dt

    from edgeops.metrics.prometheus import Prometheus
    from edgeops.report.gather import gather
    from edgeops.report.write import write_report

    # The last measurement (the drift clearing) must be scraped before it can be plotted:
    # Prometheus scrapes the operator every 5 s.
    time.sleep(10)
    try:
        with cluster.environment():
            prometheus = Prometheus(cluster.endpoints()["prometheus"], 10.0)
            data = gather(DEMO_NAMESPACE, MODEL, 3600.0, prometheus, dt.datetime.now(dt.UTC))
        index = write_report(data, directory)
        story.say(f"report: {index.resolve()} (edgeops report {MODEL} -n {DEMO_NAMESPACE})")
        for problem in data.problems:
            story.say(f"report: not shown: {problem}")
    except Exception as error:  # the demo's outcome stands without its report
        story.say(f"report not written: {type(error).__name__}: {error}")


def _loop(
    story: _Story,
    fleet: _Fleet,
    options: DemoOptions,
    rows: Any,
    deadline: float,
    data_drift: Any,
) -> bool:
    _wait(story, fleet, deadline, "v1's rollout", lambda: _rollout_done(story, 1))
    _wait(story, fleet, deadline, "every device on v1", lambda: fleet.all_on(1))
    story.say(f"fleet  {fleet.line()}")
    status = _wait(
        story, fleet, deadline, "a drift measurement of v1",
        lambda: (s := story.model_status()).get("drift", {}).get("version") == 1
        and s["drift"].get("verdict") in ("NoDrift", "Drift") and s,
    )  # fmt: skip
    story.say(f"drift before the injection: {_drift_line(status['drift'])}")

    std = float(rows.std[rows.features.index(options.drift_feature)])
    simulation = fleet.simulation
    injection = data_drift(
        options.drift_feature,
        simulation.elapsed(),
        options.drift_share,
        shift=options.drift_sigmas * std,
    )
    simulation.inject("drift", injection)
    injected = time.monotonic()
    hit = sum(injection.applies(v.name, simulation.elapsed()) for v in simulation.views)
    story.say(
        f"INJECTED data drift: {options.drift_feature} + {options.drift_sigmas:g} sd "
        f"({options.drift_sigmas * std:.2f}) on {hit} of {len(simulation.views)} devices"
    )
    status = _wait(
        story, fleet, deadline, "the drift to be detected",
        lambda: (s := story.model_status()).get("drift", {}).get("verdict") == "Drift" and s,
    )  # fmt: skip
    story.say(f"DETECTED after {time.monotonic() - injected:.0f}s: {_drift_line(status['drift'])}")
    runs = _wait(
        story, fleet, deadline, "a TrainingRun for the drift",
        lambda: [r for r in story.of_kind("TrainingRun") if r["spec"].get("reason") == "Drift"],
    )  # fmt: skip
    run = runs[0]
    dataset = story.get("Dataset", "basic-motions").get("status") or {}
    counts = {v["id"]: int(v["sampleCount"]) for v in dataset.get("versions") or []}
    version = run["spec"]["datasetRef"].get("version", "")
    trained = {v.get("datasetVersion") for v in story.model_status().get("versions") or []}
    before = [counts[v] for v in trained if v in counts]
    more = ""
    if before and version in counts:
        more = f", {counts[version] - before[0]} more than v1 trained on"
    story.say(
        f"RETRAINING: TrainingRun {run['metadata']['name']} (reason Drift) on dataset "
        f"version {version[:12]}: {counts.get(version, '?')} rows (80 lab recordings, the "
        f"rest field samples from the devices{more})"
    )
    field = run["spec"].get("fieldData") or {}
    if field.get("baselineVersion"):
        story.say(
            f"  field data: rows not in version {field['baselineVersion'][:12]} (published "
            f"before the drift began at {field.get('driftSince', '?')}) make the reference "
            "profile and at least half of the training rows"
        )
    _wait(story, fleet, deadline, "v2's rollout", lambda: _rollout_done(story, 2))
    used = (story.get("TrainingRun", run["metadata"]["name"]).get("status") or {}).get(
        "fieldData"
    ) or {}
    if used.get("fieldRows") is not None:
        story.say(
            f"  {run['metadata']['name']} learnt from {used['fieldRows']} field rows "
            f"({used.get('trainFieldRows')} in train x{used.get('copies')} = "
            f"{100 * float(used.get('weight') or 0):.0f} % of {used.get('trainRows')} training "
            f"rows); reference profile from {used.get('referenceRows')} "
            f"{used.get('referenceFrom')} rows (TrainingRun status.fieldData)"
        )
    _wait(story, fleet, deadline, "every device on v2", lambda: fleet.all_on(2))
    story.say(
        f"fleet  {fleet.line()}: the whole fleet runs v2, {time.monotonic() - injected:.0f}s "
        "after the injection"
    )
    # If v2's reference still differs from the fleet (too little post-drift data in it),
    # the drift stands and the model retrains again on newer data: v3 clears it then.
    status = _wait(
        story, fleet, deadline, "the drift to clear on a retrained version",
        lambda: (s := story.model_status()).get("drift", {}).get("version", 0) >= 2
        and s["drift"].get("verdict") == "NoDrift" and s,
    )  # fmt: skip
    story.say(f"CLEARED: {_drift_line(status['drift'])}")
    rollouts = sorted(o["metadata"]["name"] for o in story.of_kind("FleetRollout"))
    story.say(
        f"loop closed in {time.monotonic() - story.started:.0f}s "
        f"({time.monotonic() - injected:.0f}s from the injection); rollouts: "
        f"{', '.join(rollouts)}"
    )
    return True
