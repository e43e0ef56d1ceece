"""The device agent's loop: enroll, poll the desired state, install, infer, report.

One :meth:`Agent.run_once` cycle:

1. enroll with the bootstrap token if the device never did (the key is the device's own);
2. send the terminal update reports the journal still holds (a restart or a lost
   connection never leaves an update without its outcome);
3. poll the desired state (ETag); install when it names another version
   (:mod:`edgeops.device.install`), then send the outcome;
4. run the committed model over the next rows of the input stream and send the interval's
   telemetry and the sampled rows;
5. send status: what runs, the slots, health, the last update's outcome.

:meth:`Agent.run` repeats it every ``reportIntervalSeconds`` (from the desired state) with
±10 % jitter; when the gateway is rate limiting or unreachable it backs off
(:class:`~edgeops.device.client.Backoff`, honouring ``Retry-After``) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import httpx

from edgeops import __version__
from edgeops.api.device import Health
from edgeops.api.wire import (
    Capabilities,
    DesiredState,
    EnrollRequest,
    SampleUpload,
    StatusReport,
    UpdateReport,
)
from edgeops.device.client import Backoff, GatewayClient, GatewayError, RetryableError
from edgeops.device.files import atomic_write_json
from edgeops.device.health import DEFAULT_LATENCY_BUDGET_SECONDS, check_artifact
from edgeops.device.identity import load_or_create
from edgeops.device.install import HealthCheck, Installer
from edgeops.device.models import Model, ModelLoadError, load_model
from edgeops.device.runtime import InferenceRunner, InputRow
from edgeops.device.sampling import Sampler
from edgeops.device.sequence import Sequence
from edgeops.device.slots import SlotContent, SlotStore
from edgeops.device.telemetry import TelemetryAggregator

log = logging.getLogger(__name__)

ModelLoader = Callable[[bytes, str], Model]
"""Loads an artifact's bytes of a format (raises ModelLoadError)."""

ENROLLMENT_FILE: Final = "enrollment.json"
DEFAULT_INTERVAL_SECONDS: Final = 60.0
JITTER: Final = 0.1
#: Refusals no retry can change: the agent stops (the device needs a person).
FATAL_REASONS: Final = frozenset(
    {
        "NoToken",
        "InvalidToken",
        "TokenExpired",
        "TokenUsedUp",
        "KeyMismatch",
        "DeviceRejected",
        "DeviceRevoked",
    }
)


@dataclass
class AgentConfig:
    """What the agent is told at start (CLI flags or the simulator)."""

    gateway: str
    namespace: str
    name: str
    state_dir: Path
    target_type: Literal["linux", "mcu"]
    trusted_keys: Mapping[str, str]
    token: str | None = None
    hardware: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    classes: list[str] | None = None
    latency_budget_seconds: float = DEFAULT_LATENCY_BUDGET_SECONDS
    rows_per_cycle: int = 100
    #: Report sequence numbers reserved per write of ``sequence.json`` (see
    #: :mod:`edgeops.device.sequence`): 1 writes before every report.
    sequence_block: int = 1


class Agent:
    """One device (see the module docstring). ``rows`` is the input stream; the agent reads
    at most ``rows_per_cycle`` rows of it per cycle. ``transport`` carries its HTTP (the
    simulator shares one; tests pass an in-process one); ``health_check`` replaces the
    runtime check (fault injection); ``model_loader`` loads the committed artifact (the
    simulator shares one loaded model among its devices running the same bytes);
    ``label_source`` gives the (row key, label) ground truths that arrived since it was last
    called, for rows predicted earlier (delayed labels)."""

    def __init__(
        self,
        config: AgentConfig,
        rows: Iterator[InputRow] | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        health_check: HealthCheck | None = None,
        rng: random.Random | None = None,
        model_loader: ModelLoader = load_model,
        label_source: Callable[[], Iterable[tuple[str, str]]] | None = None,
    ) -> None:
        self.config = config
        self.rows = rows
        self.label_source = label_source
        self.rng = rng or random.Random()
        self.model_loader = model_loader
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.identity = load_or_create(config.state_dir)
        self.sequence = Sequence(config.state_dir, config.sequence_block)
        self.client = GatewayClient(
            config.gateway,
            config.namespace,
            config.name,
            self.identity.key,
            self.sequence,
            transport=transport,
        )
        self.store = SlotStore(config.state_dir)
        # The boot rule: run the committed slot, queue the outcome of an interrupted update.
        self.journal, interrupted = self.store.boot()
        if interrupted is not None:
            log.warning("interrupted update found at start: %s", interrupted.message)
        self.installer = Installer(
            store=self.store,
            source=self.client,
            namespace=config.namespace,
            target_type=config.target_type,
            trusted_keys=config.trusted_keys,
            health_check=health_check
            or functools.partial(
                check_artifact,
                latency_budget_seconds=config.latency_budget_seconds,
                expected_classes=len(config.classes) if config.classes else None,
            ),
            on_phase=self._report_phase,
        )
        self.backoff = Backoff(rng=self.rng)
        self.desired: DesiredState | None = None
        self.telemetry = TelemetryAggregator()
        self.sampler: Sampler | None = None
        self.runner: InferenceRunner | None = None
        self._loaded: SlotContent | None = None
        self._model_error: str | None = None
        self._interval_start = time.monotonic()
        #: Why the gateway assigns the device nothing to install right now (403
        #: ``DevicePending``, 404 ``NothingAssigned``/``NoTarget``/``NoBundle``), else None.
        self.waiting: GatewayError | None = None

    # --- enrollment ----------------------------------------------------------------------

    @property
    def enrolled(self) -> bool:
        return (self.config.state_dir / ENROLLMENT_FILE).exists()

    async def enroll(self) -> None:
        """Enrolls with the bootstrap token; remembered in the state directory. Raises
        :class:`GatewayError` (e.g. 401 ``InvalidToken``)."""
        if self.config.token is None:
            raise GatewayError(0, "NoToken", "the device is not enrolled and has no token")
        request = EnrollRequest(
            token=self.config.token,
            namespace=self.config.namespace,
            name=self.config.name,
            public_key=self.identity.public_b64,
            target_type=self.config.target_type,
            hardware=self.config.hardware,
            labels=self.config.labels,
            capabilities=Capabilities(
                runtimes=["onnxruntime", "litert"], agent_version=__version__
            ),
        )
        state = await self.client.enroll(request)
        atomic_write_json(self.config.state_dir / ENROLLMENT_FILE, {"enrollment": state})
        log.info("enrolled as %s/%s: %s", self.config.namespace, self.config.name, state)

    # --- reports -------------------------------------------------------------------------

    async def _report_phase(self, update: UpdateReport) -> None:
        await self.client.post_status(self._status(update))

    def _status(self, update: UpdateReport | None) -> StatusReport:
        journal = self.store.load()
        content = journal.committed_content()
        return StatusReport(
            sequence=0,
            agent_version=__version__,
            model=content.model if content else None,
            version=content.version if content else None,
            slots=journal.wire_slots(),
            update=update,
            health=self.health(),
        )

    def health(self) -> Health:
        """Unknown without a committed model; Unhealthy when it does not load; Degraded
        when inputs failed this interval; else Healthy."""
        if self._model_error is not None:
            return "Unhealthy"
        if self.runner is None:
            return "Unknown"
        return "Degraded" if self.telemetry.errors else "Healthy"

    async def flush_pending(self) -> None:
        """Sends the queued terminal reports, oldest first; each leaves the journal once the
        gateway accepted it (or refused it for good: a 4xx other than 429 never changes)."""
        while True:
            journal = self.store.load()
            if not journal.pending_reports:
                return
            report = journal.pending_reports[0]
            try:
                await self.client.post_status(self._status(report))
            except RetryableError:
                raise
            except GatewayError as exc:
                if exc.reason == "DevicePending":
                    return  # kept: delivered once the device is approved again
                log.error("gateway refused update report %s: %s", report, exc)
            journal = self.store.load()
            self.store.save(
                journal.model_copy(update={"pending_reports": journal.pending_reports[1:]})
            )

    # --- inference -----------------------------------------------------------------------

    def _load_committed(self) -> None:
        """(Re)loads the committed model when it changed."""
        journal = self.store.load()
        content = journal.committed_content()
        if content == self._loaded:
            return
        # Another model: its observations start a new interval (never mixed with the old).
        self._loaded, self.runner, self._model_error = content, None, None
        self.telemetry = TelemetryAggregator()
        self._interval_start = time.monotonic()
        if content is None or journal.committed is None:
            return
        path = self.store.slot_dir(journal.committed) / content.file
        try:
            model = self.model_loader(path.read_bytes(), content.format)
        except (OSError, ModelLoadError) as exc:
            self._model_error = str(exc)
            log.error("committed model does not load: %s", exc)
            return
        self.runner = InferenceRunner(model, self.telemetry, self.sampler, self.config.classes)

    def _configure(self, desired: DesiredState | None) -> None:
        """Applies the reporting parts of a desired state: profile bins and sampling. The
        profile is the desired version's: it bins features only while the device runs that
        version (the gateway checks bins against the reported version's profile)."""
        loaded = self._loaded
        runs_desired = (
            desired is not None
            and loaded is not None
            and (loaded.model, loaded.version) == (desired.model, desired.version)
        )
        profile = desired.profile if desired is not None and runs_desired else None
        if dict(profile or {}) != self.telemetry.profile:
            # Bins cannot change mid-interval: counted values would land in other bins.
            self.telemetry = TelemetryAggregator(profile)
            self._interval_start = time.monotonic()
        policy = desired.sampling if desired else None
        if policy is None:
            self.sampler = None
        elif self.sampler is None or self.sampler.policy != policy:
            self.sampler = Sampler(policy, self.rng)
        if self.runner is not None:
            self.runner.sampler = self.sampler
            self.runner.telemetry = self.telemetry

    def infer_rows(self) -> int:
        """Runs the committed model over the next rows of the stream; how many."""
        if self.runner is None or self.rows is None:
            return 0
        rows = list(itertools.islice(self.rows, self.config.rows_per_cycle))
        self.runner.infer_batch(rows)
        return len(rows)

    def receive_labels(self) -> int:
        """Counts the ground truths that arrived for earlier predictions; how many matched
        a prediction of the running model."""
        if self.label_source is None:
            return 0
        matched = 0
        for key, label in self.label_source():
            if self.runner is not None and self.runner.label(key, label):
                matched += 1
        return matched

    async def send_observations(self) -> None:
        """Sends the interval's telemetry and the sampled rows of the running model."""
        content = self._loaded
        now = time.monotonic()
        interval = max(now - self._interval_start, 1e-3)
        if content is None:
            return
        observed = self.telemetry
        if observed.inferences or observed.errors or observed.correct or observed.incorrect:
            report = self.telemetry.flush(
                model=content.model, version=content.version, interval_seconds=interval
            )
            self._interval_start = now
            # A lost report is lost once (counters are deltas), never retried into a double.
            try:
                await self.client.post_telemetry(report)
            except RetryableError:
                raise
            except GatewayError as exc:  # e.g. 409 ModelNotAssigned while moving versions
                log.warning("telemetry refused: %s", exc)
        if self.sampler is not None and self.sampler.buffer:
            rows = self.sampler.take()
            upload = SampleUpload(
                sequence=0, model=content.model, version=content.version, rows=rows
            )
            try:
                await self.client.post_samples(upload)
            except RetryableError:
                self.sampler.give_back(rows)
                raise
            except GatewayError as exc:
                log.warning("samples refused: %s", exc)

    # --- the loop ------------------------------------------------------------------------

    def interval(self) -> float:
        """Seconds until the next cycle: the desired report interval ±10 % jitter."""
        base = float(
            self.desired.report_interval_seconds if self.desired else DEFAULT_INTERVAL_SECONDS
        )
        return base * self.rng.uniform(1 - JITTER, 1 + JITTER)

    async def run_once(self) -> float:
        """One cycle (see the module docstring); the seconds to wait before the next.
        Raises :class:`RetryableError` when the gateway is rate limiting or unreachable and
        :class:`GatewayError` when it refuses the device for good."""
        if not self.enrolled:
            await self.enroll()
        await self.flush_pending()
        try:
            self.desired = await self.client.desired()
        except GatewayError as exc:
            if exc.reason != "DevicePending":
                raise
            self._wait_for(exc)
            return self.interval()
        self._wait_for(self.client.refusal)
        if self.desired is not None:
            await self.installer.install(self.desired)
            await self.flush_pending()
        self._load_committed()
        self._configure(self.desired)
        self.infer_rows()
        self.receive_labels()
        await self.send_observations()
        last = self.store.load().last_outcome
        update = None
        if last is not None:
            update = UpdateReport(
                target_version=last.target_version,
                phase=last.phase,
                attempt=last.attempt,
                reason_code=last.reason_code,
            )
        await self.client.post_status(self._status(update))
        return self.interval()

    def _wait_for(self, refusal: GatewayError | None) -> None:
        """Records why nothing is assigned (logged once per change of reason: a device
        that sits idle says why, e.g. ``NoTarget`` when no model target has its
        hardware)."""
        previous = self.waiting.reason if self.waiting else None
        self.waiting = refusal
        if refusal is not None and refusal.reason != previous:
            log.warning("%s: nothing to install: %s", self.config.name, refusal)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Cycles until ``stop`` is set, backing off while the gateway is unavailable.
        Raises :class:`GatewayError` when the gateway refuses the device for good."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                try:
                    delay = await self.run_once()
                    self.backoff.reset()
                except RetryableError as exc:
                    delay = self.backoff.next_delay(exc.retry_after)
                    log.warning(
                        "%s: gateway unavailable (%s); retrying in %.1f s",
                        self.config.name,
                        exc,
                        delay,
                    )
                except GatewayError as exc:
                    if exc.reason in FATAL_REASONS:
                        raise
                    # Anything else may be fixed on the cluster's side: keep trying, slowly.
                    delay = self.backoff.next_delay()
                    log.error(
                        "%s: gateway refused (%s); retrying in %.1f s", self.config.name, exc, delay
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        finally:
            await self.client.aclose()


def parse_trusted_keys(keys: list[str]) -> dict[str, str]:
    """Key id → base64 public key for ``--trust-key`` values (base64 of 32 raw bytes, or a
    JSON object of key id → key as the operator publishes them). Raises ``ValueError``."""
    from edgeops.signing import key_id, load_public_key

    trusted: dict[str, str] = {}
    for text in keys:
        if text.strip().startswith("{"):
            trusted.update({str(k): str(v) for k, v in json.loads(text).items()})
            continue
        load_public_key(text)  # refuses what is no Ed25519 public key
        trusted[key_id(text)] = text.strip()
    return trusted
