"""The fleet simulator: many reference agents in one process (``edgeops fleet simulate``).

Every virtual device is a real :class:`~edgeops.device.agent.Agent` (an asyncio task) with
its own Ed25519 key, A/B slots, journal and report sequence under its own state directory,
enrolled through the gateway's real enrollment path with a bootstrap token. Devices are
Linux or MCU (``mcu_share``), labelled ``site`` and ``region``, and run whatever the gateway
assigns them: installs are verified, health-checked and committed as on a real device, and
the committed model runs on the device's input stream.

Input streams are rows of a real dataset (:func:`load_rows`: the built-in BasicMotions
recordings, or a CSV / JSON Lines file exported from a Dataset version), each device
replaying them in its own order with its own Gaussian noise. Injections, scheduled in
seconds since the simulation started:

* data drift (:class:`DataDrift`): shift or scale chosen features on a share of devices;
* concept drift (:class:`ConceptDrift`): the ground-truth labels of one region's devices
  change (each class is reported as the next one), so labelled feedback turns wrong;
* failing versions (:class:`FailingVersion`): a share of devices fails the health check of
  a version (and rolls it back);
* offline devices (:class:`Offline`): a share of devices loses the network for a while;
* a slow network: every request of every device waits ``slow_network_ms`` first.

Which devices an injection hits is a pure hash of (injection, device name), so a rerun hits
the same ones. All devices share one HTTP connection pool (:class:`SimTransport` wraps it
per device for latency and outages) and one loaded model per artifact.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import logging
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import httpx
import numpy as np

from edgeops.api.wire import FeatureValue, UpdateReport
from edgeops.device.agent import Agent, AgentConfig
from edgeops.device.health import HealthCheckError, check_artifact
from edgeops.device.models import Model, load_model
from edgeops.device.runtime import InputRow

log = logging.getLogger(__name__)

#: Simultaneous connections to the gateway and S3 of the whole simulated fleet.
MAX_CONNECTIONS: Final = 64


class SpecError(ValueError):
    """An injection or dataset argument that cannot be parsed."""


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


# --- injections --------------------------------------------------------------------------


def share_hit(what: str, device: str, share: float) -> bool:
    """Whether ``device`` is in the ``share`` (0..1) of devices injection ``what`` hits: a
    pure hash, so reruns hit the same devices."""
    bucket = int.from_bytes(hashlib.sha256(f"{what}/{device}".encode()).digest()[:8], "big")
    return bucket % 10_000 < share * 10_000


@dataclass(frozen=True)
class DataDrift:
    """From ``at`` seconds on, ``feature`` becomes ``value * scale + shift`` on a ``share``
    of devices."""

    feature: str
    at: float
    share: float
    shift: float = 0.0
    scale: float = 1.0

    _SPEC = re.compile(
        r"^(?P<feature>[^=]+)=(?P<op>[+\-*])(?P<value>[0-9.eE+\-]+)@(?P<at>[0-9.]+)"
        r"(?:,(?P<share>[0-9.]+))?$"
    )

    @classmethod
    def parse(cls, text: str) -> DataDrift:
        """``feature=+2.5@60,0.3`` (shift by 2.5 from 60 s on 30 % of devices),
        ``feature=*1.5@60,0.3`` (scale); the share defaults to 1."""
        found = cls._SPEC.match(text.strip())
        if found is None:
            raise SpecError(f"--drift {text!r}: expected feature=(+|-|*)value@seconds[,share]")
        value = float(found["value"])
        share = _share(found["share"] or "1", "--drift")
        at = float(found["at"])
        if found["op"] == "*":
            return cls(found["feature"], at, share, scale=value)
        return cls(found["feature"], at, share, shift=value if found["op"] == "+" else -value)

    def applies(self, device: str, elapsed: float) -> bool:
        return elapsed >= self.at and share_hit(f"drift:{self.feature}", device, self.share)


@dataclass(frozen=True)
class ConceptDrift:
    """From ``at`` seconds on, the devices of ``region`` see each class's rows labelled as
    the next class (the world changed; the model did not)."""

    region: str
    at: float

    @classmethod
    def parse(cls, text: str) -> ConceptDrift:
        """``eu@120``."""
        region, sep, at = text.partition("@")
        if not sep or not region:
            raise SpecError(f"--concept-drift {text!r}: expected region@seconds")
        return cls(region, _number(at, "--concept-drift"))


@dataclass(frozen=True)
class FailingVersion:
    """A ``share`` of devices fails the health check of ``version`` (any model)."""

    version: int
    share: float

    @classmethod
    def parse(cls, text: str) -> FailingVersion:
        """``3:0.5``."""
        version, sep, share = text.partition(":")
        if not sep or not version.isdigit():
            raise SpecError(f"--fail-version {text!r}: expected version:share")
        return cls(int(version), _share(share, "--fail-version"))


@dataclass(frozen=True)
class Offline:
    """A ``share`` of devices has no network from ``at`` seconds on, for ``duration``
    seconds (None: until the end)."""

    share: float
    at: float = 0.0
    duration: float | None = None

    @classmethod
    def parse(cls, text: str) -> Offline:
        """``0.1`` (from the start, for good), ``0.1@30`` or ``0.1@30+60``."""
        share, _, when = text.partition("@")
        start, plus, duration = when.partition("+")
        return cls(
            _share(share, "--offline"),
            _number(start, "--offline") if start else 0.0,
            _number(duration, "--offline") if plus else None,
        )

    def applies(self, device: str, elapsed: float) -> bool:
        if elapsed < self.at or not share_hit("offline", device, self.share):
            return False
        return self.duration is None or elapsed < self.at + self.duration


def _number(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"{option}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise SpecError(f"{option}: {text!r} is not a non-negative number")
    return value


def _share(text: str, option: str) -> float:
    value = _number(text, option)
    if value > 1:
        raise SpecError(f"{option}: share {text!r} is not within 0..1")
    return value


# --- the network -------------------------------------------------------------------------


class SimTransport(httpx.AsyncBaseTransport):
    """One device's view of the shared connection pool: requests wait ``delay_seconds``
    first, and fail like a missing network while ``offline()`` says so. Closing it leaves
    the shared pool open (the simulator closes that once)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        delay_seconds: float = 0.0,
        offline: Callable[[], bool] = lambda: False,
    ) -> None:
        self.inner, self.delay_seconds, self.offline = inner, delay_seconds, offline

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.offline():
            raise httpx.ConnectError("simulated outage: no network", request=request)
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
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
    sites: int = 4
    regions: Sequence[str] = ("eu", "us")
    noise: float = 0.05
    drift: Sequence[DataDrift] = ()
    concept_drift: Sequence[ConceptDrift] = ()
    fail_versions: Sequence[FailingVersion] = ()
    offline: Sequence[Offline] = ()
    slow_network_ms: float = 0.0
    interval_seconds: float | None = None
    rows_per_cycle: int = 20
    ramp_seconds: float = 10.0
    seed: int = 0
    #: ``spec.hardware`` each device enrolls with, by target type (``linux``, ``mcu``): it
    #: must match a target's ``hardware`` of the model, or the gateway has nothing for it.
    hardware: Mapping[str, str] = field(
        default_factory=lambda: {"linux": "linux-sim", "mcu": "mcu-sim"}
    )


Phase = str


@dataclass
class DeviceView:
    """What the progress display shows of one device."""

    name: str
    target_type: str
    site: str
    region: str
    version: int | None = None
    phase: Phase = "Enrolling"
    cycles: int = 0
    last_cycle: float | None = None
    error: str | None = None


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
        **kw: Any,
    ) -> None:
        super().__init__(config, rows, **kw)
        self.view = view
        self.fixed_interval = fixed_interval
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
        delay = await super().run_once()
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


class Simulation:
    """N virtual devices against one gateway (see the module docstring)."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.rng = random.Random(config.seed)
        self._pool = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
            )
        )
        self._models: dict[tuple[str, str], Model] = {}
        self._health: dict[tuple[str, str], object] = {}
        self.views: list[DeviceView] = []
        self.agents: list[SimulatedAgent] = []
        for index in range(config.devices):
            self.agents.append(self._device(index))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # --- construction ---

    def _device(self, index: int) -> SimulatedAgent:
        cfg = self.config
        tokens = [cfg.token] if isinstance(cfg.token, str) else list(cfg.token)
        name = f"{cfg.prefix}-{index:04d}"
        mcu = share_hit("mcu", name, cfg.mcu_share)
        target: Literal["linux", "mcu"] = "mcu" if mcu else "linux"
        region = cfg.regions[index % len(cfg.regions)]
        site = f"{region}-site-{(index // len(cfg.regions)) % max(cfg.sites, 1)}"
        view = DeviceView(name, target, site, region)
        config = AgentConfig(
            gateway=cfg.gateway, namespace=cfg.namespace, name=name,
            state_dir=cfg.state_root / name, target_type=target,
            trusted_keys=cfg.trusted_keys, token=tokens[index % len(tokens)],
            hardware=cfg.hardware.get(target, f"{target}-sim"),
            labels={"site": site, "region": region}, classes=cfg.classes,
            rows_per_cycle=cfg.rows_per_cycle,
            # Hundreds of devices share two cores: a latency budget per device would fail
            # health checks on scheduling noise, not on the model.
            latency_budget_seconds=5.0,
        )  # fmt: skip
        transport = SimTransport(
            self._pool,
            cfg.slow_network_ms / 1000,
            offline=lambda: any(o.applies(name, self.elapsed()) for o in cfg.offline),
        )
        rng = random.Random(f"{cfg.seed}/{name}")
        agent = SimulatedAgent(
            config,
            self.stream(name, region, rng),
            view=view,
            fixed_interval=cfg.interval_seconds,
            transport=transport,
            health_check=self._health_check(name, config),
            rng=rng,
            model_loader=self._load_model,
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
        failing = self.config.fail_versions

        def check(data: bytes, fmt: str) -> object:
            flight = agent_journal(config).in_flight
            version = flight.target_version if flight else None
            for rule in failing:
                if version == rule.version and share_hit(f"fail:{rule.version}", name, rule.share):
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
        the device's noise, data drift and concept drift as scheduled."""
        rows, cfg = self.config.rows, self.config
        gen = np.random.default_rng(rng.getrandbits(64))
        noise = rows.std * cfg.noise * rng.uniform(0.5, 1.5)
        index = {f: i for i, f in enumerate(rows.features)}
        classes = sorted(set(rows.labels)) if rows.labels else []
        while True:
            for i in gen.permutation(len(rows.values)):
                elapsed = self.elapsed()
                vector = rows.values[i] + gen.standard_normal(len(noise)).astype(np.float32) * noise
                for drift in cfg.drift:
                    if drift.feature in index and drift.applies(name, elapsed):
                        j = index[drift.feature]
                        vector[j] = vector[j] * drift.scale + drift.shift
                label = rows.labels[i] if rows.labels else None
                if label is not None and any(
                    c.region == region and elapsed >= c.at for c in cfg.concept_drift
                ):
                    label = classes[(classes.index(label) + 1) % len(classes)]
                features: dict[str, FeatureValue] = {f: float(vector[j]) for f, j in index.items()}
                yield InputRow(vector=vector.astype(np.float32), features=features, label=label)

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
        except Exception as exc:  # a device the gateway refused for good stops; the rest go on
            agent.view.phase = "Refused"
            agent.view.error = str(exc)
            log.error("%s stopped: %s", agent.config.name, exc)

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> None:
        """Runs every device until ``stop`` is set or ``duration`` seconds passed."""
        self.started = time.monotonic()
        tasks = [asyncio.create_task(self._run_device(a, stop)) for a in self.agents]
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


def agent_journal(config: AgentConfig) -> Any:
    """The journal in ``config``'s state directory."""
    from edgeops.device.slots import SlotStore

    return SlotStore(config.state_dir).load()


def progress_table(simulation: Simulation) -> Any:
    """A rich table of devices by version and phase, with the fleet's targets."""
    from rich.table import Table

    table = Table(title=f"fleet: {len(simulation.views)} devices, {simulation.elapsed():.0f} s")
    table.add_column("version")
    table.add_column("phase")
    table.add_column("devices", justify="right")
    table.add_column("linux", justify="right")
    table.add_column("mcu", justify="right")
    by_target: dict[tuple[str, str], Counter[str]] = {}
    for view in simulation.views:
        key = (f"v{view.version}" if view.version is not None else "-", view.phase)
        by_target.setdefault(key, Counter())[view.target_type] += 1
    for (version, phase), count in sorted(simulation.summary().items()):
        targets = by_target[(version, phase)]
        table.add_row(version, phase, str(count), str(targets["linux"]), str(targets["mcu"]))
    return table


@dataclass
class Schedule:
    """The injections of a run, parsed from the CLI's options."""

    drift: list[DataDrift] = field(default_factory=list)
    concept_drift: list[ConceptDrift] = field(default_factory=list)
    fail_versions: list[FailingVersion] = field(default_factory=list)
    offline: list[Offline] = field(default_factory=list)

    @classmethod
    def parse(
        cls,
        drift: Sequence[str] = (),
        concept_drift: Sequence[str] = (),
        fail_versions: Sequence[str] = (),
        offline: Sequence[str] = (),
    ) -> Schedule:
        """Raises :class:`SpecError` naming the option at fault."""
        return cls(
            [DataDrift.parse(t) for t in drift],
            [ConceptDrift.parse(t) for t in concept_drift],
            [FailingVersion.parse(t) for t in fail_versions],
            [Offline.parse(t) for t in offline],
        )
