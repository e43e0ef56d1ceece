"""Process bookkeeping of the devcluster: a component that is still exec-ing counts as running."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from edgeops.devcluster import processes

# A program that takes a moment to load and then stays up: the window in which the kernel has
# not yet filled in /proc/<pid>/cmdline is what these tests exercise.
_SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


def test_a_component_is_running_from_the_moment_it_is_started(tmp_path: Path) -> None:
    for i in range(20):
        pid = processes.start(_SLEEPER, tmp_path / f"{i}.log", env={})
        try:
            assert processes.alive(pid, _SLEEPER[0])
            assert processes.exit_status(pid) is None
        finally:
            assert processes.stop(pid, _SLEEPER[0], timeout=5)
        assert not processes.alive(pid, _SLEEPER[0])


def test_a_process_started_elsewhere_is_recognised_while_it_execs() -> None:
    procs = [subprocess.Popen(_SLEEPER, start_new_session=True) for _ in range(10)]
    try:
        assert all(processes.alive(p.pid, _SLEEPER[0]) for p in procs)
        assert not any(processes.alive(p.pid, "/bin/some-other-program") for p in procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert not any(processes.alive(p.pid, _SLEEPER[0]) for p in procs)


def test_exit_status_tells_exit_code_and_signal(tmp_path: Path) -> None:
    failing = processes.start([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "f.log", {})
    sleeping = processes.start(_SLEEPER, tmp_path / "s.log", env={})
    processes.stop(sleeping, _SLEEPER[0], timeout=5)
    deadline = time.monotonic() + 10
    while processes.exit_status(failing) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes.exit_status(failing) == "exit code 3"
    assert processes.exit_status(sleeping) == "killed by SIGTERM"
    assert processes.exit_status(1) is None
