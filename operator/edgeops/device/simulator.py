"""The fleet simulator: many reference agents in one process (``edgeops fleet simulate``).

Every virtual device is a real :class:`~edgeops.device.agent.Agent` (an asyncio task) with
its own Ed25519 key, A/B slots, journal and report sequence under its own state directory,
enrolled through the gateway's real enrollment path with a bootstrap token. Devices are
Linux or MCU (``mcu_share``), with the hardware the model's targets name (``hardware``,
``mcu_hardware``: the sensor-fleet example's ``raspberry-pi-4`` and ``esp32-s3`` by
default), labelled ``site`` and ``region``, and run whatever the gateway assigns them:
installs are verified, health-checked and committed as on a real device, and the committed
model runs on the device's input stream. When the gateway assigns nothing (``NoTarget``,
``NothingAssigned``, ``NoBundle``, ``DevicePending``) or fails, each device's view says why
(:meth:`Simulation.problems`), so an idle fleet explains itself.

Input streams are rows of a real dataset (:func:`load_rows`: the built-in BasicMotions
recordings, or a CSV / JSON Lines file exported from a Dataset version), each device
replaying them in its own order with its own Gaussian noise; the ground truth arrives with
the row or ``label_delay_seconds`` later (delayed labels). Injections
(:mod:`edgeops.device.injections`: data drift, concept drift, failing versions, offline
devices, a slow network) are scheduled from the command line or started and stopped while
it runs through the control file in the state directory (:mod:`edgeops.device.control`,
``edgeops fleet inject``).

All devices share one HTTP connection pool (:class:`SimTransport` wraps it per device for
latency and outages) and one loaded model per artifact.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import csv
import hashlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import httpx
import numpy as np

from edgeops.api.wire import FeatureValue, UpdateReport
from edgeops.device.agent import Agent, AgentConfig
from edgeops.device.client import GatewayError
from edgeops.device.control import ControlFile
from edgeops.device.health import HealthCheckError, check_artifact
from edgeops.device.injections import (
    Active,
    ConceptDrift,
    DataDrift,
    FailingVersion,
    Injections,
    Offline,
    SlowNetwork,
    SpecError,
    share_hit,
)
from edgeops.device.models import Model, load_model
from edgeops.device.runtime import InputRow

__all__ = [
    "ConceptDrift", "DataDrift", "FailingVersion", "Injections", "Offline", "Rows",
    "SimTransport", "SimulatedAgent", "Simulation", "SimulationConfig", "SlowNetwork",
    "SpecError", "load_rows", "share_hit",
]  # fmt: skip

log = logging.getLogger(__name__)

#: Simultaneous connections to the gateway and S3 of the whole simulated fleet.
MAX_CONNECTIONS: Final = 64
#: The sensor-fleet example's targets (examples/sensor-fleet/02-edgemodel.yaml).
DEFAULT_HARDWARE: Final = ("raspberry-pi-4",)
DEFAULT_MCU_HARDWARE: Final = ("esp32-s3",)
#: Report numbers each device reserves per write of its sequence file: one fsync per 100
#: reports instead of one per report (fsync on the shared event loop stalled every device).
SEQUENCE_BLOCK: Final = 100
#: Seconds between two reads of the control file.
CONTROL_POLL_SECONDS: Final = 0.5
#: What a person can do about each reason a device gives for running nothing new.
HINTS: Final[dict[str, str]] = {
    "NoTarget": "no target of the EdgeModel has the devices' type and hardware: compare "
    "--hardware/--mcu-hardware with the model's spec.targets[].hardware",
    "NothingAssigned": "no model version for these devices: create the token with --labels "
    "edgeops.dev/model=MODEL, and check the model has a currentVersion",
    "NoBundle": "the assigned version has no signed bundle for the devices' target (yet)",
    "DevicePending": "approve the Devices (edgeops device approve NAME) or enroll with a "
    "token created with --auto-approve",
    "GatewayUnreachable": "check --gateway and that the gateway runs",
    "TokenUsedUp": "the token has fewer uses than --devices: create one with --max-uses",
    "InvalidToken": "the token is unknown to the gateway (another namespace or cluster?)",
    "TokenExpired": "create a new token (--ttl)",
    "KeyMismatch": "Devices of these names exist with other keys (another --state-dir): use "
    "a new --prefix or delete the old Devices",
    "DeviceRejected": "the Devices are rejected (spec.approval); approve them or use others",
    "DeviceRevoked": "the Devices were decommissioned",
}


# --- the input data ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """A dataset's rows: ``features`` in model-input order, the ``label`` column's values
    (None when unlabelled) and per-feature standard deviations (for noise)."""

    features: list[str]
    values: np.ndarray[Any, np.dtype[np.float32]]  # [rows, features]
    labels: list[str] | None
    std: np.ndarray[Any, np.dtype[np.float32]]

    @classmethod
    def of(
        cls, features: Sequence[str], records: Sequence[Mapping[str, Any]], label: str | None
    ) -> Rows:
        if not records:
            raise SpecError("the dataset has no rows")
        missing = [f for f in features if f not in records[0]]
        if missing:
            raise SpecError(f"rows lack the features {missing}")
        values = np.asarray(
            [[float(r[f]) for f in features] for r in records], dtype=np.float32
        ).reshape(len(records), len(features))
        labels = [str(r[label]) for r in records] if label else None
        std = np.nan_to_num(np.nanstd(values, axis=0)).astype(np.float32)
        return cls(list(features), values, labels, std)


def load_rows(source: str, label: str | None = None) -> Rows:
    """The rows of ``source``: ``builtin:<name>`` (a built-in dataset, ``samples`` extra:
    its schema's features and label) or a ``.csv`` / ``.jsonl`` file whose columns are the
    features, plus ``label`` if given. Raises :class:`SpecError` and ``OSError``."""
    if source.startswith("builtin:"):
        # edgeops.datasets.builtin reads files shipped in PyPI packages (aeon, ...) and
        # depends on edgeops.api only: importing it keeps the device package off the
        # cluster (the import-linter contract of edgeops.device).
        from edgeops.datasets.builtin import BuiltinUnavailableError, load

        try:
            data = load(source.removeprefix("builtin:"))  # type: ignore[arg-type]
        except (BuiltinUnavailableError, ValueError) as exc:
            raise SpecError(f"{source}: {exc}") from None
        names = [f.name for f in data.schema.features]
        return Rows.of(names, list(data.rows()), label or data.schema.label)
    path = Path(source)
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            records: list[dict[str, Any]] = list(csv.DictReader(handle))
    elif path.suffix in (".jsonl", ".ndjson"):
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        raise SpecError(f"{source}: expected builtin:<name>, a .csv or a .jsonl file")
    if not records:
        raise SpecError(f"{source} has no rows")
    features = [c for c in records[0] if c != label]
    return Rows.of(features, records, label)


# --- the network -------------------------------------------------------------------------


class SimTransport(httpx.AsyncBaseTransport):
    """One device's view of the shared connection pool: requests wait ``delay_seconds``
    first (a number, or a function giving the current delay), and fail like a missing
    network while ``offline()`` says so. Closing it leaves the shared pool open (the
    simulator closes that once)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        delay_seconds: float | Callable[[], float] = 0.0,
        offline: Callable[[], bool] = lambda: False,
    ) -> None:
        self.inner, self.offline = inner, offline
        self.delay = delay_seconds if callable(delay_seconds) else lambda: delay_seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.offline():
            raise httpx.ConnectError("simulated outage: no network", request=request)
        delay = self.delay()
        if delay:
            await asyncio.sleep(delay)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        """The pool is the fleet's, not this device's."""


# --- devices -----------------------------------------------------------------------------


@dataclass
class SimulationConfig:
    """What ``edgeops fleet simulate`` is told."""

    gateway: str
    namespace: str
    devices: int
    #: Bootstrap token(s); device i enrolls with token i mod len. Several tokens spread
    #: enrollment over several token Secrets (each use is a compare-and-swap on its Secret).
    token: str | Sequence[str]
    trusted_keys: Mapping[str, str]
    rows: Rows
    state_root: Path
    classes: list[str] | None = None
    prefix: str = "sim"
    mcu_share: float = 0.0
    #: ``spec.hardware`` of Linux / MCU devices; with several, each device gets one by a
    #: hash of its name.
    hardware: Sequence[str] = DEFAULT_HARDWARE
    mcu_hardware: Sequence[str] = DEFAULT_MCU_HARDWARE
    sites: int = 4
    regions: Sequence[str] = ("eu", "us")
    noise: float = 0.05
    drift: Sequence[DataDrift] = ()
    concept_drift: Sequence[ConceptDrift] = ()
    fail_versions: Sequence[FailingVersion] = ()
    offline: Sequence[Offline] = ()
    slow_network_ms: float = 0.0
    #: Seconds between a row's prediction and its ground truth reaching the device (0:
    #: together, as before).
    label_delay_seconds: float = 0.0
    interval_seconds: float | None = None
    rows_per_cycle: int = 20
    ramp_seconds: float = 10.0
    seed: int = 0
    #: Injections parsed from the command line (their texts are shown as given); the
    #: lists above are added to them.
    injections: Injections | None = None
    #: Read injections on command from ``state_root/control.jsonl``.
    control: bool = True


Phase = str


@dataclass
class DeviceView:
    """What the progress display shows of one device. ``problem`` is why it runs nothing
    new: the gateway's refusal of its last poll or the error of its last cycle."""

    name: str
    target_type: str
    site: str
    region: str
    hardware: str = ""
    version: int | None = None
    phase: Phase = "Enrolling"
    cycles: int = 0
    last_cycle: float | None = None
    problem: GatewayError | None = None

    @property
    def why(self) -> str:
        """The problem's reason (``NoTarget``), or ``""``."""
        return self.problem.reason if self.problem is not None else ""


class SimulatedAgent(Agent):
    """A reference agent that records what it does in ``view`` (the progress display) and,
    when ``fixed_interval`` is set, cycles at that interval instead of the desired state's
    (the simulator's ``--interval``: a benchmark sets the pace without editing Devices)."""

    def __init__(
        self,
        config: AgentConfig,
        rows: Iterator[InputRow],
        *,
        view: DeviceView,
        fixed_interval: float | None = None,
        cycles: asyncio.Semaphore | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(config, rows, **kw)
        self.view = view
        self.fixed_interval = fixed_interval
        self.cycles = cycles
        report_phase = self.installer.on_phase

        async def on_phase(update: UpdateReport) -> None:
            self.view.phase = update.phase
            if report_phase is not None:
                await report_phase(update)

        self.installer.on_phase = on_phase

    def interval(self) -> float:
        if self.fixed_interval is None:
            return super().interval()
        return self.fixed_interval * self.rng.uniform(0.9, 1.1)

    async def run_once(self) -> float:
        try:
            if self.cycles is None:
                delay = await super().run_once()
            else:
                # A request is signed when built, before it waits for a pooled connection:
                # with every device queueing on the pool an overloaded gateway saw
                # signatures older than its 300 s window (401 SignatureExpired). Devices
                # wait here instead, unsigned, for one of the pool's connections.
                async with self.cycles:
                    delay = await super().run_once()
        except GatewayError as exc:
            self.view.problem = exc
            raise
        self.view.problem = self.waiting
        journal = self.store.load()
        content = journal.committed_content()
        self.view.version = content.version if content else None
        last = journal.last_outcome
        self.view.phase = "Running" if content else "Waiting"
        if last is not None and last.phase != "Committed":
            self.view.phase = f"{last.phase}"
        self.view.last_cycle = time.monotonic()
        self.view.cycles += 1
        return delay


@dataclass(frozen=True)
class Problem:
    """Devices giving the same reason: HTTP status, reason, how many (linux, mcu), one
    device's message and what to do about it."""

    reason: str
    status: int
    devices: int
    linux: int
    mcu: int
    message: str
    example: str
    hint: str


class Simulation:
    """N virtual devices against one gateway (see the module docstring)."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.rng = random.Random(config.seed)
        self.injections = config.injections or Injections()
        for kind, items in (
            ("drift", config.drift), ("concept-drift", config.concept_drift),
            ("fail-version", config.fail_versions), ("offline", config.offline),
        ):  # fmt: skip
            for item in items:
                self.injections.add(kind, _spec(item), item)
        if config.slow_network_ms:
            self.injections.add(
                "slow-network", f"{config.slow_network_ms:g}", SlowNetwork(config.slow_network_ms)
            )
        self._pool = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
            )
        )
        #: Device cycles in flight at once: no more than the pool has connections.
        self._cycles = asyncio.Semaphore(MAX_CONNECTIONS)
        self._models: dict[tuple[str, str], Model] = {}
        self._health: dict[tuple[str, str], object] = {}
        #: Per device: (due time, row key, label) of ground truths not yet delivered.
        self._labels: dict[str, collections.deque[tuple[float, str, str]]] = {}
        self.views: list[DeviceView] = []
        self.agents: list[SimulatedAgent] = []
        for index in range(config.devices):
            self.agents.append(self._device(index))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # --- construction ---

    def inject(self, kind: str, injection: Any) -> Active:
        """Starts an injection given as a value (e.g. a ``DataDrift`` whose ``start`` is
        :meth:`elapsed`) while the simulation runs, as ``edgeops fleet inject`` does from
        the command line; ``kind`` as in :class:`Injections` (``drift``, ``concept-drift``,
        ``fail-version``, ``offline``)."""
        return self.injections.add(kind, _spec(injection), injection)

    def _device(self, index: int) -> SimulatedAgent:
        cfg = self.config
        tokens = [cfg.token] if isinstance(cfg.token, str) else list(cfg.token)
        name = f"{cfg.prefix}-{index:04d}"
        mcu = share_hit("mcu", name, cfg.mcu_share)
        target: Literal["linux", "mcu"] = "mcu" if mcu else "linux"
        choices = list(cfg.mcu_hardware if mcu else cfg.hardware) or [f"{target}-sim"]
        pick = int.from_bytes(hashlib.sha256(f"hardware/{name}".encode()).digest()[:4], "big")
        hardware = choices[pick % len(choices)]
        region = cfg.regions[index % len(cfg.regions)]
        site = f"{region}-site-{(index // len(cfg.regions)) % max(cfg.sites, 1)}"
        view = DeviceView(name, target, site, region, hardware)
        config = AgentConfig(
            gateway=cfg.gateway, namespace=cfg.namespace, name=name,
            state_dir=cfg.state_root / name, target_type=target,
            trusted_keys=cfg.trusted_keys, token=tokens[index % len(tokens)],
            hardware=hardware, labels={"site": site, "region": region}, classes=cfg.classes,
            rows_per_cycle=cfg.rows_per_cycle, sequence_block=SEQUENCE_BLOCK,
            # Hundreds of devices share two cores: a latency budget per device would fail
            # health checks on scheduling noise, not on the model.
            latency_budget_seconds=5.0,
        )  # fmt: skip
        transport = SimTransport(
            self._pool,
            lambda: self.injections.network_delay(self.elapsed()),
            offline=lambda: any(o.applies(name, self.elapsed()) for o in self.injections.offline),
        )
        rng = random.Random(f"{cfg.seed}/{name}")
        self._labels[name] = collections.deque()
        agent = SimulatedAgent(
            config,
            self.stream(name, region, rng),
            view=view,
            fixed_interval=cfg.interval_seconds,
            cycles=self._cycles,
            transport=transport,
            health_check=self._health_check(name, config),
            rng=rng,
            model_loader=self._load_model,
            label_source=lambda: self.due_labels(name),
        )
        self.views.append(view)
        return agent

    def _load_model(self, data: bytes, fmt: str) -> Model:
        """One loaded model per artifact for the whole fleet (read-only inference)."""
        key = (hashlib.sha256(data).hexdigest(), fmt)
        if key not in self._models:
            self._models[key] = load_model(data, fmt)
        return self._models[key]

    def _health_check(self, name: str, config: AgentConfig) -> Callable[[bytes, str], object]:
        def check(data: bytes, fmt: str) -> object:
            flight = agent_journal(config).in_flight
            version = flight.target_version if flight else None
            for rule in self.injections.fail_versions:
                if rule.applies(name, version, self.elapsed()):
                    raise HealthCheckError(f"simulated: v{version} fails on this device")
            # The real check once per artifact: it passed for one device, it passes for all
            # (the same bytes in the same runtime on the same machine).
            key = (hashlib.sha256(data).hexdigest(), fmt)
            if key not in self._health:
                self._health[key] = check_artifact(
                    data, fmt, latency_budget_seconds=config.latency_budget_seconds,
                    expected_classes=len(config.classes) if config.classes else None,
                )  # fmt: skip
            return self._health[key]

        return check

    def stream(self, name: str, region: str, rng: random.Random) -> Iterator[InputRow]:
        """The device's endless input: the dataset's rows in a device-specific order, with
        the device's noise, data drift and concept drift as the injections say. With a
        label delay, a row comes without its label, which :meth:`due_labels` delivers
        later (by the row's key)."""
        rows, cfg = self.config.rows, self.config
        gen = np.random.default_rng(rng.getrandbits(64))
        noise = rows.std * cfg.noise * rng.uniform(0.5, 1.5)
        index = {f: i for i, f in enumerate(rows.features)}
        classes = sorted(set(rows.labels)) if rows.labels else []
        pending = self._labels.setdefault(name, collections.deque())
        count = 0
        while True:
            for i in gen.permutation(len(rows.values)):
                elapsed = self.elapsed()
                vector = rows.values[i] + gen.standard_normal(len(noise)).astype(np.float32) * noise
                for drift in self.injections.drift:
                    if drift.feature in index and drift.applies(name, elapsed):
                        j = index[drift.feature]
                        vector[j] = vector[j] * drift.scale + drift.shift
                label = rows.labels[i] if rows.labels else None
                if label is not None and any(
                    c.applies(region, elapsed) for c in self.injections.concept_drift
                ):
                    label = classes[(classes.index(label) + 1) % len(classes)]
                features: dict[str, FeatureValue] = {f: float(vector[j]) for f, j in index.items()}
                count += 1
                key = f"{name}/{count}"
                if label is not None and cfg.label_delay_seconds > 0:
                    pending.append((elapsed + cfg.label_delay_seconds, key, label))
                    label = None
                vector = vector.astype(np.float32)
                yield InputRow(vector=vector, features=features, label=label, key=key)

    def due_labels(self, name: str) -> Iterable[tuple[str, str]]:
        """The (row key, label) ground truths of device ``name`` due by now."""
        pending, now = self._labels.get(name), self.elapsed()
        while pending and pending[0][0] <= now:
            _, key, label = pending.popleft()
            yield key, label

    # --- running ---

    async def _run_device(self, agent: SimulatedAgent, stop: asyncio.Event) -> None:
        # Devices come up over the ramp, as a fleet does, not all in the same second.
        delay = self.rng.uniform(0, self.config.ramp_seconds)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return
        except TimeoutError:
            pass
        try:
            await agent.run(stop)
        except GatewayError as exc:  # refused for good (e.g. TokenUsedUp): the rest go on
            agent.view.phase, agent.view.problem = "Refused", exc
            log.error("%s stopped: %s", agent.config.name, exc)
        except Exception as exc:  # a bug in one device must not stop the fleet
            agent.view.phase = "Refused"
            agent.view.problem = GatewayError(0, type(exc).__name__, str(exc))
            log.exception("%s stopped", agent.config.name)

    async def _control(self, stop: asyncio.Event) -> None:
        """Applies the control file's commands until ``stop`` (see edgeops.device.control)."""
        control = ControlFile(self.config.state_root)
        published = float("-inf")  # at once: `edgeops fleet inject --list` works from the start
        while not stop.is_set():
            now = self.elapsed()
            try:
                if control.apply(self.injections, now) or now - published >= 5:
                    control.publish(self.injections, now)
                    published = now
            except OSError as exc:  # a full or removed state directory: keep simulating
                log.error("control file: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=CONTROL_POLL_SECONDS)

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> None:
        """Runs every device until ``stop`` is set or ``duration`` seconds passed."""
        self.started = time.monotonic()
        self.config.state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        tasks = [asyncio.create_task(self._run_device(a, stop)) for a in self.agents]
        if self.config.control:
            tasks.append(asyncio.create_task(self._control(stop)))
        try:
            if duration is not None:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=duration)
                except TimeoutError:
                    stop.set()
            await asyncio.gather(*tasks)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._pool.aclose()

    def summary(self) -> Counter[tuple[str, str]]:
        """Devices by (version, phase): ``("v2", "Running")``, ``("-", "Enrolling")``."""
        return Counter(
            (f"v{v.version}" if v.version is not None else "-", v.phase) for v in self.views
        )

    def problems(self) -> list[Problem]:
        """Why devices run nothing new, by reason, most devices first: the gateway's
        refusal of their last poll (``NoTarget``, ...) or the error of their last cycle."""
        by_reason: dict[str, list[DeviceView]] = {}
        for view in self.views:
            if view.problem is not None:
                by_reason.setdefault(view.problem.reason, []).append(view)
        found = []
        for reason, views in by_reason.items():
            first = views[0]
            assert first.problem is not None
            found.append(
                Problem(
                    reason=reason,
                    status=first.problem.status,
                    devices=len(views),
                    linux=sum(v.target_type == "linux" for v in views),
                    mcu=sum(v.target_type == "mcu" for v in views),
                    message=first.problem.message,
                    example=f"{first.name} ({first.target_type}, hardware {first.hardware})",
                    hint=HINTS.get(reason, ""),
                )
            )
        return sorted(found, key=lambda p: (-p.devices, p.reason))


def _spec(injection: Any) -> str:
    """A readable text for an injection given as a value (not parsed from the CLI)."""
    fields = ", ".join(f"{k}={v}" for k, v in vars(injection).items() if v is not None)
    return f"{type(injection).__name__}({fields})"


def agent_journal(config: AgentConfig) -> Any:
    """The journal in ``config``'s state directory."""
    from edgeops.device.slots import SlotStore

    return SlotStore(config.state_dir).load()


def progress_table(simulation: Simulation, final: bool = False) -> Any:
    """A rich renderable: devices by version, phase and the reason they give (if any), then
    one line per reason with the gateway's message and what to do about it."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = "final" if final else "fleet"
    table = Table(title=f"{title}: {len(simulation.views)} devices, {simulation.elapsed():.0f} s")
    for column in ("version", "phase", "why"):
        table.add_column(column)
    for column in ("devices", "linux", "mcu"):
        table.add_column(column, justify="right")
    rows: dict[tuple[str, str, str], Counter[str]] = {}
    for view in simulation.views:
        key = (f"v{view.version}" if view.version is not None else "-", view.phase, view.why)
        rows.setdefault(key, Counter())[view.target_type] += 1
    for (version, phase, why), targets in sorted(rows.items()):
        total = targets["linux"] + targets["mcu"]
        table.add_row(version, phase, why, str(total), str(targets["linux"]), str(targets["mcu"]))
    lines: list[Any] = [table]
    for problem in simulation.problems():
        text = Text()
        text.append(f"{problem.reason}", style="bold yellow")
        text.append(
            f" ({problem.status or 'no answer'}) on {problem.devices} devices "
            f"({problem.linux} linux, {problem.mcu} mcu), e.g. {problem.example}: "
            f"{problem.message}"
        )
        if problem.hint:
            text.append(f"\n  → {problem.hint}", style="cyan")
        lines.append(text)
    active = [
        a for a in simulation.injections.items
        if a.injection.at <= simulation.elapsed() and Injections.is_active(a, simulation.elapsed())
    ]  # fmt: skip
    if active:
        lines.append(
            Text("injections: " + ", ".join(f"{a.id} ({a.kind} {a.spec})" for a in active))
        )
    return Group(*lines)
