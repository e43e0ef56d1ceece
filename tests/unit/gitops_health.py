"""Runs the Argo CD health checks of examples/gitops/argocd/argocd-cm-health.yaml with Lua
5.1 (Argo CD runs them in gopher-lua, a Lua 5.1), as Argo CD does: ``obj`` is the object,
the script returns ``{status, message}``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from lupa import lua51

CONFIG_MAP = (
    Path(__file__).resolve().parents[2] / "examples" / "gitops" / "argocd" / "argocd-cm-health.yaml"
)
KINDS = ("Dataset", "TrainingRun", "EdgeModel", "FleetRollout", "Device")
#: The statuses Argo CD knows.
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def scripts() -> dict[str, str]:
    """Kind -> Lua source, from the ConfigMap users merge into argocd-cm."""
    data = yaml.safe_load(CONFIG_MAP.read_text())["data"]
    prefix = "resource.customizations.health.edgeops.dev_"
    return {key.removeprefix(prefix): value for key, value in data.items()}


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) Argo CD would show for ``obj``."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(scripts()[obj["kind"]])
    status, message = str(result["status"]), str(result["message"])
    assert status in ARGO_STATUSES, status
    return status, message
