"""The trainer's and evaluator's Job entry points end their process with `exit_now`: the
exit status is main's, and what was printed (even without a newline, into a pipe) is not
lost with the skipped interpreter teardown."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import sys
from edgeops.training.run import exit_now
print("results published", end="")
print("a warning", end="", file=sys.stderr)
exit_now(3)
"""


def test_exit_now_keeps_the_status_and_the_buffered_output() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": ""},
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, "results published", "a warning")
