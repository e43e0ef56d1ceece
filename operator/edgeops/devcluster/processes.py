"""Starting, finding and stopping the devcluster's long-running processes.

Each component runs in its own session (process group) so `down` can stop it together
with anything it spawned, and a PID is trusted only while /proc still shows the command
line that was started under it (PIDs get reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

# Components this process started, so their exit status can be told when one dies.
_children: dict[int, subprocess.Popen[bytes]] = {}


def start(argv: list[str], log_path: Path, env: dict[str, str], cwd: Path | None = None) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def exit_status(pid: int) -> str | None:
    """How a component started by this process ended ("exit code 1", "killed by SIGTERM"),
    or None while it runs or when it is not our child."""
    proc = _children.get(pid)
    code = proc.poll() if proc else None
    if code is None:
        return None
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def alive(pid: int, argv0: str) -> bool:
    """True while `pid` runs and is still the program we started (not a reused PID)."""
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None
    args = cmdline(pid)
    # Popen returns once exec has begun, but the kernel fills in the new command line a
    # little later: an empty one on a live process is a program still starting.
    deadline = time.monotonic() + 2.0
    while not args and not _is_zombie(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
        args = cmdline(pid)
    return bool(args) and args[0] == argv0 and not _is_zombie(pid)


def _reap(pid: int) -> None:
    # Children of this very process must be reaped, or they linger as zombies.
    proc = _children.get(pid)
    if proc is not None:
        proc.poll()
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(pid: int, argv0: str, timeout: float = 10.0) -> bool:
    """SIGTERM the process group, then SIGKILL after `timeout`. Returns True if it was running."""
    if not alive(pid, argv0):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid, argv0):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    # Anything else left in the group (grandchildren) goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    return True


# Below Linux's ephemeral range (32768-60999): a port handed out here is never taken by
# an outgoing connection in the seconds before the component binds it.
PORT_RANGE = (20000, 32000)


def free_port() -> int:
    import random
    import socket

    for _ in range(200):
        port = random.randrange(*PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE[0]}-{PORT_RANGE[1]} on 127.0.0.1")
