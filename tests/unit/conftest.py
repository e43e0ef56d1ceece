"""Unit tests read settings from a clean environment: the session devcluster's operator
settings (tests/conftest.py, set when an integration test started the cluster in this same
pytest process) must not change what a unit test sees."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgeops import settings as settings_module
from tests.conftest import SESSION_OPERATOR_ENV

_CACHED = ("settings", "trainer_settings", "gateway_settings", "predictor_settings")


def _clear_caches() -> None:
    for name in _CACHED:
        getattr(settings_module, name).cache_clear()


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in SESSION_OPERATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    _clear_caches()
    yield
    _clear_caches()
