"""What the fleet simulator injects, scheduled or on command.

Each injection is a frozen value with the time window it is active in, in seconds since the
simulation started (``at`` up to ``until``, None: to the end):

* :class:`DataDrift`: shift or scale one feature on a share of devices;
* :class:`ConceptDrift`: the ground truth of one region's devices moves to the next class;
* :class:`FailingVersion`: a share of devices fails the health check of a version;
* :class:`Offline`: a share of devices loses the network;
* :class:`SlowNetwork`: every request of every device waits some milliseconds first.

Which devices an injection hits is a pure hash of (injection, device name)
(:func:`share_hit`), so a rerun hits the same ones. :class:`Injections` is the live set
the simulator's devices consult; scheduled ones come from the command line
(:meth:`Injections.parse`), on-command ones are started and stopped while it runs
(:meth:`Injections.start`, :meth:`Injections.stop`, driven by :mod:`edgeops.device.control`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

#: The kinds of injection, as the command line and the control file name them.
Kind = Literal["drift", "concept-drift", "fail-version", "offline", "slow-network"]
KINDS: Final[tuple[Kind, ...]] = (
    "drift", "concept-drift", "fail-version", "offline", "slow-network",
)  # fmt: skip


class SpecError(ValueError):
    """An injection or dataset argument that cannot be parsed."""


def share_hit(what: str, device: str, share: float) -> bool:
    """Whether ``device`` is in the ``share`` (0..1) of devices injection ``what`` hits: a
    pure hash, so reruns hit the same devices."""
    bucket = int.from_bytes(hashlib.sha256(f"{what}/{device}".encode()).digest()[:8], "big")
    return bucket % 10_000 < share * 10_000


def _active(at: float, until: float | None, elapsed: float) -> bool:
    return elapsed >= at and (until is None or elapsed < until)


@dataclass(frozen=True)
class DataDrift:
    """From ``at`` seconds on (until ``until``), ``feature`` becomes
    ``value * scale + shift`` on a ``share`` of devices."""

    feature: str
    at: float
    share: float
    shift: float = 0.0
    scale: float = 1.0
    until: float | None = None

    _SPEC = re.compile(
        r"^(?P<feature>[^=]+)=(?P<op>[+\-*])(?P<value>[0-9.eE+\-]+?)(?:@(?P<at>[0-9.]+))?"
        r"(?:,(?P<share>[0-9.]+))?$"
    )

    @classmethod
    def parse(cls, text: str, now: float | None = None) -> DataDrift:
        """``feature=+2.5@60,0.3`` (shift by 2.5 from 60 s on 30 % of devices),
        ``feature=*1.5@60,0.3`` (scale); the share defaults to 1. On command (``now``
        given) ``@seconds`` may be left out: from ``now``."""
        found = cls._SPEC.match(text.strip())
        if found is None or (found["at"] is None and now is None):
            raise SpecError(f"--drift {text!r}: expected feature=(+|-|*)value@seconds[,share]")
        try:
            value = float(found["value"])
        except ValueError:
            raise SpecError(f"--drift {text!r}: {found['value']!r} is not a number") from None
        share = _share(found["share"] or "1", "--drift")
        at = float(found["at"]) if found["at"] is not None else float(now or 0.0)
        if found["op"] == "*":
            return cls(found["feature"], at, share, scale=value)
        return cls(found["feature"], at, share, shift=value if found["op"] == "+" else -value)

    def applies(self, device: str, elapsed: float) -> bool:
        return _active(self.at, self.until, elapsed) and share_hit(
            f"drift:{self.feature}", device, self.share
        )


@dataclass(frozen=True)
class ConceptDrift:
    """From ``at`` seconds on (until ``until``), the devices of ``region`` see each class's
    rows labelled as the next class (the world changed; the model did not)."""

    region: str
    at: float
    until: float | None = None

    @classmethod
    def parse(cls, text: str, now: float | None = None) -> ConceptDrift:
        """``eu@120``; on command just ``eu`` (from ``now``)."""
        region, sep, at = text.strip().partition("@")
        if not region or (not sep and now is None):
            raise SpecError(f"--concept-drift {text!r}: expected region@seconds")
        return cls(region, _number(at, "--concept-drift") if sep else float(now or 0.0))

    def applies(self, region: str, elapsed: float) -> bool:
        return region == self.region and _active(self.at, self.until, elapsed)


@dataclass(frozen=True)
class FailingVersion:
    """A ``share`` of devices fails the health check of ``version`` (any model), for
    installs from ``at`` seconds on (until ``until``)."""

    version: int
    share: float
    at: float = 0.0
    until: float | None = None

    @classmethod
    def parse(cls, text: str, now: float | None = None) -> FailingVersion:
        """``3:0.5``."""
        version, sep, share = text.strip().partition(":")
        if not sep or not version.isdigit():
            raise SpecError(f"--fail-version {text!r}: expected version:share")
        return cls(int(version), _share(share, "--fail-version"), at=float(now or 0.0))

    def applies(self, device: str, version: int | None, elapsed: float) -> bool:
        return (
            version == self.version
            and _active(self.at, self.until, elapsed)
            and share_hit(f"fail:{self.version}", device, self.share)
        )


@dataclass(frozen=True)
class Offline:
    """A ``share`` of devices has no network from ``at`` seconds on, for ``duration``
    seconds (None: until the end)."""

    share: float
    at: float = 0.0
    duration: float | None = None

    @classmethod
    def parse(cls, text: str, now: float | None = None) -> Offline:
        """``0.1`` (from the start, or from ``now`` on command, for good), ``0.1@30``,
        ``0.1@30+60``; on command also ``0.1+60`` (from ``now``, for 60 s)."""
        share, at, when = text.strip().partition("@")
        if not at and "+" in share:  # on command: share+duration, from now
            share, _, duration = share.partition("+")
            when = f"+{duration}"
        start, plus, duration = when.partition("+")
        return cls(
            _share(share, "--offline"),
            _number(start, "--offline") if start else float(now or 0.0),
            _number(duration, "--offline") if plus else None,
        )

    @property
    def until(self) -> float | None:
        return None if self.duration is None else self.at + self.duration

    def applies(self, device: str, elapsed: float) -> bool:
        return _active(self.at, self.until, elapsed) and share_hit("offline", device, self.share)


@dataclass(frozen=True)
class SlowNetwork:
    """Every request of every device waits ``milliseconds`` first, from ``at`` (until
    ``until``)."""

    milliseconds: float
    at: float = 0.0
    until: float | None = None

    @classmethod
    def parse(cls, text: str, now: float | None = None) -> SlowNetwork:
        """``200`` (milliseconds)."""
        return cls(_number(text.strip(), "--slow-network"), at=float(now or 0.0))

    def delay(self, elapsed: float) -> float:
        """Seconds to wait now."""
        return self.milliseconds / 1000 if _active(self.at, self.until, elapsed) else 0.0


Injection = DataDrift | ConceptDrift | FailingVersion | Offline | SlowNetwork
_PARSERS: Final[dict[str, Callable[[str, float | None], Injection]]] = {
    "drift": DataDrift.parse,
    "concept-drift": ConceptDrift.parse,
    "fail-version": FailingVersion.parse,
    "offline": Offline.parse,
    "slow-network": SlowNetwork.parse,
}


def parse(kind: str, text: str, now: float | None = None) -> Injection:
    """One injection of ``kind`` (:data:`KINDS`) from its command-line ``text``; ``now``
    (seconds since the start) is its start when the text names none. Raises
    :class:`SpecError`."""
    parser = _PARSERS.get(kind)
    if parser is None:
        raise SpecError(f"unknown injection {kind!r}: one of {', '.join(KINDS)}")
    injection: Injection = parser(text, now)
    return injection


def ended(injection: Injection, at: float) -> Injection:
    """``injection`` stopped at ``at`` seconds (a stop command)."""
    if isinstance(injection, Offline):
        return dataclasses.replace(injection, duration=max(at - injection.at, 0.0))
    return dataclasses.replace(injection, until=at)


@dataclass
class Active:
    """One injection in the live set: its id, its kind and the text it was given."""

    id: str
    kind: str
    spec: str
    injection: Injection


@dataclass
class Injections:
    """The live set of injections the simulated devices consult (one event loop: no
    locking). Stopped injections stay, with their end, so what happened remains shown."""

    items: list[Active] = field(default_factory=list)

    @classmethod
    def parse(
        cls,
        drift: Sequence[str] = (),
        concept_drift: Sequence[str] = (),
        fail_versions: Sequence[str] = (),
        offline: Sequence[str] = (),
        slow_network_ms: float = 0.0,
    ) -> Injections:
        """The scheduled injections of the command line. Raises :class:`SpecError` naming
        the option at fault."""
        found = cls()
        for kind, texts in (
            ("drift", drift), ("concept-drift", concept_drift),
            ("fail-version", fail_versions), ("offline", offline),
        ):  # fmt: skip
            for text in texts:
                found.add(kind, text, parse(kind, text))
        if slow_network_ms:
            found.add("slow-network", str(slow_network_ms), SlowNetwork(slow_network_ms))
        return found

    def add(self, kind: str, spec: str, injection: Injection, id: str | None = None) -> Active:
        active = Active(id or f"{kind}-{len(self.items) + 1}", kind, spec, injection)
        self.items.append(active)
        return active

    def start(self, kind: str, spec: str, now: float, id: str | None = None) -> Active:
        """Starts ``kind`` as ``spec`` says, from ``now`` unless it names its own start.
        Raises :class:`SpecError`."""
        return self.add(kind, spec, parse(kind, spec, now), id)

    def stop(self, id: str, now: float) -> list[Active]:
        """Ends injection ``id`` (``all``: every one still active) at ``now``; those it
        ended. Raises :class:`SpecError` when no such injection is active."""
        hits = [a for a in self.items if (id in ("all", a.id)) and self.is_active(a, now)]
        if not hits and id != "all":
            raise SpecError(f"no active injection {id!r}")
        for active in hits:
            active.injection = ended(active.injection, now)
        return hits

    @staticmethod
    def is_active(active: Active, now: float) -> bool:
        """Active at ``now`` or scheduled to start later (not ended)."""
        until = active.injection.until
        return until is None or now < until

    def of(self, kind: type[Injection]) -> list[Injection]:
        return [a.injection for a in self.items if isinstance(a.injection, kind)]

    @property
    def drift(self) -> list[DataDrift]:
        return [i for i in self.of(DataDrift) if isinstance(i, DataDrift)]

    @property
    def concept_drift(self) -> list[ConceptDrift]:
        return [i for i in self.of(ConceptDrift) if isinstance(i, ConceptDrift)]

    @property
    def fail_versions(self) -> list[FailingVersion]:
        return [i for i in self.of(FailingVersion) if isinstance(i, FailingVersion)]

    @property
    def offline(self) -> list[Offline]:
        return [i for i in self.of(Offline) if isinstance(i, Offline)]

    def network_delay(self, elapsed: float) -> float:
        """Seconds every request waits now (the slow networks active, added)."""
        return sum(i.delay(elapsed) for i in self.of(SlowNetwork) if isinstance(i, SlowNetwork))


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
