"""Kopf refuses to start an operator that has admission handlers but no webhook server, so
the handlers exist only when ``EDGEOPS_ADMISSION_PORT`` is set (the chart leaves it unset
by default; the devcluster sets it). Checked in fresh interpreters: registration happens
at import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

COUNT = (
    "import edgeops.controllers; from kopf._core.intents import registries; "
    "print(len(registries.get_default_registry()._webhooks.get_all_handlers()))"
)


@pytest.mark.parametrize(("port", "handlers"), [(None, 0), ("19443", 5)])
def test_admission_handlers_exist_only_with_a_webhook_server(
    port: str | None, handlers: int
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEOPS_")}
    if port is not None:
        env["EDGEOPS_ADMISSION_PORT"] = port
    done = subprocess.run(
        [sys.executable, "-c", COUNT], env=env, capture_output=True, text=True, check=True
    )
    assert int(done.stdout.strip().splitlines()[-1]) == handlers


def test_a_refused_spec_is_logged_at_info_not_error() -> None:
    from logging import ERROR, INFO, LogRecord

    from edgeops.controllers.admission import RefusalsAreNotErrors

    def record(message: str) -> LogRecord:
        return LogRecord("kopf.objects", ERROR, __file__, 1, message, None, None)

    refusal = record("Webhook 'validate-datasets' failed permanently: spec.split: bad")
    crash = record("Handler 'reconcile' failed permanently: boom")
    assert RefusalsAreNotErrors().filter(refusal) and refusal.levelno == INFO
    assert refusal.levelname == "INFO"
    assert RefusalsAreNotErrors().filter(crash) and crash.levelno == ERROR
