"""The agent's command line: ``edgeops device run`` and ``python -m edgeops.device`` (the
device-agent image's entrypoint). Kept here, not in :mod:`edgeops.cli`, so the agent's
entrypoint imports nothing of the operator's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated, Literal

import typer

from edgeops.device.agent import Agent, AgentConfig, parse_trusted_keys
from edgeops.device.client import GatewayError


def run(
    gateway: Annotated[str, typer.Option(help="Gateway base URL, e.g. http://127.0.0.1:8088.")],
    name: Annotated[str, typer.Option(help="Device name.")],
    trust_key: Annotated[
        list[str],
        typer.Option(
            "--trust-key",
            help="Public key bundles are signed with: base64 of 32 raw Ed25519 bytes, or a "
            'JSON object {"keyId": "base64"}. Repeat during a key rotation.',
        ),
    ],
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace.")] = "default",
    token: Annotated[
        str | None,
        typer.Option(help="Bootstrap token (first start only).", envvar="EDGEOPS_DEVICE_TOKEN"),
    ] = None,
    state_dir: Annotated[
        Path, typer.Option(help="Keys, slots and journal (keep it on persistent storage).")
    ] = Path("/var/lib/edgeops-agent"),
    target_type: Annotated[
        str, typer.Option(help="linux (ONNX/TFLite) or mcu (TFLite-Micro bundle).")
    ] = "linux",
    hardware: Annotated[str | None, typer.Option(help="Hardware model.")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="k=v label sent at enrollment.")
    ] = None,
    latency_budget_ms: Annotated[
        float, typer.Option(help="Health check: median latency budget per row (ms).", min=0.001)
    ] = 250.0,
) -> None:
    """Run the device agent: enroll, install verified bundles into A/B slots, report."""
    if target_type not in ("linux", "mcu"):
        raise typer.BadParameter("--target-type is linux or mcu")
    try:
        keys = parse_trusted_keys(trust_key)
    except ValueError as exc:
        raise typer.BadParameter(f"--trust-key: {exc}") from None
    labels = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not k=v")
        labels[key] = value
    kind: Literal["linux", "mcu"] = "linux" if target_type == "linux" else "mcu"
    config = AgentConfig(
        gateway=gateway, namespace=namespace, name=name, state_dir=state_dir,
        target_type=kind, trusted_keys=keys, token=token, hardware=hardware, labels=labels,
        latency_budget_seconds=latency_budget_ms / 1000,
    )  # fmt: skip
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await Agent(config).run(stop)

    try:
        asyncio.run(main())
    except GatewayError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    """``python -m edgeops.device``."""
    typer.run(run)
