"""Injections on command: ``edgeops fleet inject`` talks to a running ``edgeops fleet
simulate`` through two files in the simulator's state directory.

* ``control.jsonl``: commands, one JSON object a line, appended by :func:`send` with one
  ``O_APPEND`` write (lines of concurrent senders never interleave). The simulator reads
  the lines added since it started (:class:`ControlFile`); commands written while no
  simulator runs are never applied.
* ``injections.json``: what the simulator answers, rewritten atomically after each command
  it handled and every few seconds: the injections (id, kind, spec, start, end, active)
  and, per command id, whether it was applied and the message. :func:`wait_for_answer`
  polls it.

Files rather than a port: nothing to bind, find or secure (the state directory is the
simulator's user's, mode 0700), and a command is a line a person can also append by hand.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from edgeops.device.files import atomic_write_json
from edgeops.device.injections import KINDS, Injections, SpecError

CONTROL_FILE: Final = "control.jsonl"
STATE_FILE: Final = "injections.json"
#: Answers kept in the state file (older command ids are forgotten).
MAX_ANSWERS: Final = 200
#: Longest command line read (anything longer is refused, not buffered without bound).
MAX_LINE_BYTES: Final = 4096


@dataclass(frozen=True)
class Command:
    """Start an injection (``kind``, ``spec`` as on the command line, e.g. ``drift`` /
    ``acc_x_mean=+3,0.3``) or stop one (``stop`` = an injection id, or ``all``)."""

    id: str
    kind: str | None = None
    spec: str | None = None
    stop: str | None = None

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> Command:
        """Raises :class:`SpecError` for a command that is neither a start nor a stop."""
        command = cls(
            id=str(document.get("id") or ""),
            kind=_text(document.get("kind")),
            spec=_text(document.get("spec")),
            stop=_text(document.get("stop")),
        )
        if not command.id:
            raise SpecError("a command needs an id")
        if command.stop is None and (command.kind not in KINDS or command.spec is None):
            raise SpecError(f"a command starts one of {', '.join(KINDS)} (kind, spec) or stops one")
        return command


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def new_id() -> str:
    """A fresh command id."""
    return secrets.token_hex(4)


def send(state_dir: Path, command: Command) -> None:
    """Appends ``command`` to the control file of the simulator using ``state_dir``. Raises
    ``OSError`` (e.g. no such directory)."""
    line = json.dumps({k: v for k, v in asdict(command).items() if v is not None}) + "\n"
    fd = os.open(state_dir / CONTROL_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The simulator's last answer file, or None when there is none (yet)."""
    try:
        document = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def wait_for_answer(state_dir: Path, command_id: str, timeout: float) -> dict[str, Any] | None:
    """The simulator's answer to command ``command_id`` (``{"applied": bool, "message":
    str}``), waiting up to ``timeout`` seconds; None when none came (no simulator runs
    with this state directory)."""
    deadline = time.monotonic() + timeout
    while True:
        state = read_state(state_dir) or {}
        answer = (state.get("answers") or {}).get(command_id)
        if isinstance(answer, dict):
            return answer
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


class ControlFile:
    """The simulator's side: new commands since it started, and its answers."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / CONTROL_FILE
        try:
            # Commands written before this simulator started were for another run.
            self.offset = self.path.stat().st_size
        except OSError:
            self.offset = 0
        self.answers: dict[str, dict[str, Any]] = {}

    def poll(self) -> list[Command | SpecError]:
        """The complete lines appended since the last poll, as commands (or the error a
        malformed line gives)."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []  # a line still being written
        self.offset += end + 1
        found: list[Command | SpecError] = []
        for raw in data[: end + 1].splitlines():
            if not raw.strip():
                continue
            try:
                if len(raw) > MAX_LINE_BYTES:
                    raise SpecError(
                        f"a command line of {len(raw)} bytes (at most {MAX_LINE_BYTES})"
                    )
                document = json.loads(raw)
                if not isinstance(document, dict):
                    raise SpecError("a command is a JSON object")
                found.append(Command.of(document))
            except (ValueError, SpecError) as exc:
                found.append(exc if isinstance(exc, SpecError) else SpecError(str(exc)))
        return found

    def apply(self, injections: Injections, now: float) -> int:
        """Applies the new commands to ``injections`` at ``now`` (seconds since the start);
        how many there were."""
        commands = self.poll()
        for command in commands:
            if isinstance(command, SpecError):
                continue  # no id to answer to; the sender times out and says so
            try:
                if command.stop is not None:
                    ended = injections.stop(command.stop, now)
                    message = (
                        f"stopped {', '.join(a.id for a in ended) or 'nothing'} at {now:.0f} s"
                    )
                else:
                    assert command.kind is not None and command.spec is not None
                    active = injections.start(command.kind, command.spec, now)
                    message = (
                        f"{active.id}: {active.kind} {active.spec} from "
                        f"{active.injection.at:.0f} s (now {now:.0f} s)"
                    )
                self.answers[command.id] = {"applied": True, "message": message}
            except SpecError as exc:
                self.answers[command.id] = {"applied": False, "message": str(exc)}
        while len(self.answers) > MAX_ANSWERS:
            self.answers.pop(next(iter(self.answers)))
        return len(commands)

    def publish(self, injections: Injections, now: float) -> None:
        """Writes the answer file: the injections and the answers so far."""
        atomic_write_json(
            self.state_dir / STATE_FILE,
            {
                "pid": os.getpid(),
                "elapsedSeconds": round(now, 1),
                "injections": [
                    {
                        "id": a.id,
                        "kind": a.kind,
                        "spec": a.spec,
                        "from": a.injection.at,
                        "until": a.injection.until,
                        "active": a.injection.at <= now and Injections.is_active(a, now),
                    }
                    for a in injections.items
                ],
                "answers": self.answers,
            },
        )
