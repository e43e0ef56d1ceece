"""The `edgeops` command: the local control plane (`edgeops dev ...`) and the operator."""

from __future__ import annotations

import json
import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.table import Table

from edgeops.devcluster.build import BuildError
from edgeops.devcluster.cluster import DevCluster, DevClusterError

app = typer.Typer(help="EdgeOps: Kubernetes-native edge MLOps.", no_args_is_help=True)
dev = typer.Typer(help="Local control plane on 127.0.0.1 (no Docker).", no_args_is_help=True)
operator_app = typer.Typer(help="The EdgeOps operator.", no_args_is_help=True)
app.add_typer(dev, name="dev")
app.add_typer(operator_app, name="operator")
gateway_app = typer.Typer(help="The fleet gateway devices talk to.", no_args_is_help=True)
device_app = typer.Typer(
    help="Devices: bootstrap tokens, approval, the device agent.", no_args_is_help=True
)
token_app = typer.Typer(help="Bootstrap tokens that enroll devices.", no_args_is_help=True)
rollout_app = typer.Typer(
    help="FleetRollouts: status, and pause/resume/approve/abort as spec changes.",
    no_args_is_help=True,
)
app.add_typer(rollout_app, name="rollout")
fleet_app = typer.Typer(help="Fleets of devices: the simulator.", no_args_is_help=True)
app.add_typer(gateway_app, name="gateway")
app.add_typer(fleet_app, name="fleet")
app.add_typer(device_app, name="device")
device_app.add_typer(token_app, name="token")


def _piped_width(stream: TextIO) -> int | None:
    """Console width when ``stream`` is not a terminal (a pipe, a CI log): rich would cut
    tables to 80 columns there, so wide enough for every table unless COLUMNS says
    otherwise; None (the terminal's width) on a terminal."""
    if stream.isatty() or os.environ.get("COLUMNS"):
        return None
    return 200


console = Console(stderr=True, width=_piped_width(sys.stderr))

NameOpt = Annotated[str, typer.Option("--name", help="Cluster name (one state dir each).")]


class Output(StrEnum):
    """How a command that prints state prints it: a table for people, JSON or YAML for
    scripts (on stdout, nothing else mixed in)."""

    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="table, or json/yaml for scripts (stdout).")
]


def emit(data: Any, output: Output) -> None:
    """Prints ``data`` (plain dicts, lists, strings, numbers) as JSON or YAML on stdout."""
    if output is Output.JSON:
        typer.echo(json.dumps(data, indent=2))
    else:
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="State directory root (default: XDG state dir).")
]


def _cluster(name: str, home: Path | None) -> DevCluster:
    return DevCluster(name=name, home=home)


@dev.command("up")
def dev_up(
    name: NameOpt = "default",
    home: HomeOpt = None,
    operator: Annotated[bool, typer.Option(help="Also start the EdgeOps operator.")] = True,
    node: Annotated[
        bool, typer.Option(help="Also start the local node (without it pods stay Pending).")
    ] = True,
    audit_policy: Annotated[
        Path | None,
        typer.Option(help="audit.k8s.io/v1 Policy file: the apiserver writes logs/audit.log."),
    ] = None,
) -> None:
    """Build (first run only) and start etcd, kube-apiserver, kube-controller-manager, the
    local node, MinIO, Prometheus and the operator. Idempotent."""
    cluster = _cluster(name, home)
    try:
        cluster.up(
            with_operator=operator,
            report=lambda m: console.print(f"[cyan]edgeops dev[/] {m}"),
            with_node=node,
            audit_policy=audit_policy,
        )
    except (DevClusterError, BuildError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    typer.echo(f"export KUBECONFIG={cluster.kubeconfig}")


@dev.command("down")
def dev_down(
    name: NameOpt = "default",
    home: HomeOpt = None,
    purge: Annotated[
        bool, typer.Option(help="Also delete all state (etcd, S3 data, logs).")
    ] = False,
) -> None:
    """Stop every process the devcluster started."""
    _cluster(name, home).down(
        report=lambda m: console.print(f"[cyan]edgeops dev[/] {m}"), purge=purge
    )


@dev.command("status")
def dev_status(
    name: NameOpt = "default", home: HomeOpt = None, output: OutputOpt = Output.TABLE
) -> None:
    """Show each component, its PID, state and endpoint; exit 1 if any has crashed."""
    cluster = _cluster(name, home)
    gateway = cluster.gateway_status()
    if output is not Output.TABLE:
        statuses = cluster.status()
        rows: list[dict[str, Any]] = [
            {
                "component": s.name,
                "pid": s.pid,
                "state": "not started"
                if s.pid is None
                else ("crashed" if not s.running else ("ready" if s.ready else "starting")),
                "endpoint": s.endpoint,
                "log": str(s.log),
            }
            for s in statuses
        ]
        if gateway is not None:
            rows.append(
                {
                    "component": "gateway",
                    "pid": None,
                    "state": "ready" if gateway[0] else "not ready",
                    "endpoint": gateway[1],
                    "log": "kubectl -n edgeops-system logs deploy/edgeops-gateway",
                }
            )
        emit(rows, output)
        if any(s.pid is not None and not s.running for s in statuses):
            raise typer.Exit(1)
        return
    table = Table(title=f"devcluster {name}", caption=f"logs: {cluster.logs}")
    for col in ("component", "pid", "state"):
        table.add_column(col)
    table.add_column("endpoint", no_wrap=True)
    crashed = False
    for s in cluster.status():
        if s.pid is None:
            state = "not started"
        elif not s.running:
            state, crashed = "[red]CRASHED[/]", True
        else:
            state = "[green]ready[/]" if s.ready else "[yellow]starting[/]"
        table.add_row(s.name, str(s.pid or "-"), state, s.endpoint)
    if gateway is not None:
        # A pod on the local node, not a process of ours: its logs are the pod's.
        state = "[green]ready[/]" if gateway[0] else "[yellow]not ready[/]"
        table.add_row("gateway (pod)", "-", state, gateway[1])
    Console(width=_piped_width(sys.stdout)).print(table)
    if crashed:
        raise typer.Exit(1)


@dev.command("demo")
def dev_demo(
    name: NameOpt = "default",
    home: HomeOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for everything.")] = 1800,
    devices: Annotated[int, typer.Option(help="Simulated devices.", min=2)] = 100,
    mcu_share: Annotated[
        float, typer.Option(help="Share of MCU (esp32-s3) devices.", min=0, max=1)
    ] = 0.3,
    drift_share: Annotated[
        float, typer.Option(help="Share of devices whose input drifts.", min=0, max=1)
    ] = 0.4,
    interval: Annotated[
        float, typer.Option(help="Seconds between a simulated device's cycles.", min=1)
    ] = 5.0,
) -> None:
    """Run the closed loop of examples/sensor-fleet in namespace sensor-fleet (deleted
    first if it exists): BasicMotions -> v1 trained, gated, signed -> rollout in waves to
    simulated devices -> data drift injected -> detected -> field samples -> retrained v2
    -> rollout -> drift cleared, printing each step."""
    from edgeops.devcluster.demo import DEMO_NAMESPACE, DemoOptions, run_demo

    cluster = _cluster(name, home)
    options = DemoOptions(
        devices=devices, mcu_share=mcu_share, drift_share=drift_share,
        interval_seconds=interval, timeout=timeout,
    )  # fmt: skip
    try:
        # Plain echo: rich would re-wrap kubectl's tables and long messages to 80 columns.
        ok = run_demo(cluster, options=options, report=typer.echo)
    except DevClusterError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    kinds = "datasets.edgeops.dev,trainingruns,edgemodels,fleetrollouts"
    typer.echo(cluster.kubectl("get", kinds, "-n", DEMO_NAMESPACE).stdout)
    if not ok:
        raise typer.Exit(1)


@dev.command("env")
def dev_env(name: NameOpt = "default", home: HomeOpt = None) -> None:
    """Print shell exports (KUBECONFIG, S3 and Prometheus endpoints): eval "$(edgeops dev env)"."""
    cluster = _cluster(name, home)
    for key, value in cluster.env().items():
        typer.echo(f"export {key}={value}")
    typer.echo(f"export PATH={cluster.kubectl_path().parent}:$PATH")


@operator_app.command("run")
def operator_run(
    health_port: Annotated[
        int | None,
        typer.Option(
            help="Liveness endpoint port (/healthz) [default: EDGEOPS_HEALTH_PORT or 8080].",
            min=1,
            max=65535,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Prometheus /metrics port [default: EDGEOPS_METRICS_PORT or 9090].",
            min=1,
            max=65535,
        ),
    ] = None,
    bind_address: Annotated[
        str | None,
        typer.Option(
            help="Address for health and metrics [default: EDGEOPS_BIND_ADDRESS or 127.0.0.1]."
        ),
    ] = None,
    peering: Annotated[bool, typer.Option(help="Kopf peering for several replicas.")] = False,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            help="Watch only this namespace; repeat for several (the chart's watchNamespaces). "
            "Default: the whole cluster."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the EdgeOps operator (Kopf) against the current kubeconfig or in-cluster config.
    Configuration comes from EDGEOPS_* variables (see the README); the flags override."""
    from edgeops.settings import SettingsError, settings

    try:
        settings()  # a bad variable stops the start, before any handler runs
    except SettingsError as exc:
        # One plain line (rich would wrap it at the pod log's 80 columns), no traceback.
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    # Only now: importing the controllers registers handlers, some by the settings.
    from edgeops.controllers import runtime

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    runtime.run(
        health_port=health_port,
        metrics_port=metrics_port,
        peering=peering,
        namespaces=namespace or [],
        bind_address=bind_address,
    )


# --- model registry requests (annotations the operator acts on) ---------------------------

NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the EdgeModel.")]


def _request_nonce() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _annotate_model(namespace: str, model: str, key: str, value: str) -> None:
    from kubernetes.client.rest import ApiException

    from edgeops.api.constants import EDGE_MODELS
    from edgeops.k8s import custom

    try:
        custom.annotate(namespace, EDGE_MODELS, model, {key: value})
    except ApiException as exc:
        console.print(f"[red]error:[/] EdgeModel {namespace}/{model}: {exc.reason}")
        raise typer.Exit(1) from exc


@app.command("promote")
def promote(
    model: Annotated[str, typer.Argument(help="EdgeModel name.")],
    version: Annotated[int, typer.Argument(help="Approved version to make current.", min=1)],
    namespace: NamespaceOpt = "default",
) -> None:
    """Make VERSION the current version of MODEL (creates a FleetRollout when the model has
    a rollout template)."""
    from edgeops.api.constants import Annotations

    _annotate_model(namespace, model, Annotations.PROMOTE, f"{version} {_request_nonce()}")
    typer.echo(f"requested: {namespace}/{model} v{version} -> current")


@app.command("rollback")
def rollback(
    model: Annotated[str, typer.Argument(help="EdgeModel name.")],
    version: Annotated[
        int | None, typer.Argument(help="Version to return to (default: previous approved).")
    ] = None,
    namespace: NamespaceOpt = "default",
) -> None:
    """Return MODEL to an earlier approved version."""
    from edgeops.api.constants import EDGE_MODELS, Annotations
    from edgeops.api.edgemodel import EdgeModelStatus
    from edgeops.k8s import objects
    from edgeops.policy import registry

    if version is None:
        body = objects.read_custom(namespace, EDGE_MODELS, model)
        if body is None:
            console.print(f"[red]error:[/] EdgeModel {namespace}/{model} not found")
            raise typer.Exit(1)
        status = EdgeModelStatus.model_validate(body.get("status") or {})
        version = registry.rollback_target(status)
        if version is None:
            console.print(
                f"[red]error:[/] no approved version older than v{status.current_version}"
            )
            raise typer.Exit(1)
    _annotate_model(namespace, model, Annotations.PROMOTE, f"{version} {_request_nonce()}")
    typer.echo(f"requested: {namespace}/{model} rollback to v{version}")


@app.command("retrain")
def retrain(
    model: Annotated[str, typer.Argument(help="EdgeModel name.")],
    namespace: NamespaceOpt = "default",
) -> None:
    """Start a TrainingRun of MODEL now (reason Manual; skips the cooldown)."""
    from edgeops.api.constants import Annotations

    _annotate_model(namespace, model, Annotations.RETRAIN, _request_nonce())
    typer.echo(f"requested: retrain {namespace}/{model}")


# --- the fleet gateway and devices ----------------------------------------------------------


@gateway_app.command("run")
def gateway_run(
    port: Annotated[
        int | None,
        typer.Option(help="Port [default: EDGEOPS_GATEWAY_PORT or 8088].", min=1, max=65535),
    ] = None,
    bind_address: Annotated[
        str | None,
        typer.Option(help="Address [default: EDGEOPS_GATEWAY_BIND_ADDRESS or 127.0.0.1]."),
    ] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            help="Serve only this namespace's devices; repeat for several (the chart's "
            "watchNamespaces). Default: the whole cluster."
        ),
    ] = None,
) -> None:
    """Run the fleet gateway (uvicorn) against the current kubeconfig or in-cluster config.
    It serves signed bundle manifests from the operator's S3 store (EDGEOPS_S3_*)."""
    from edgeops.gateway.server import serve
    from edgeops.settings import SettingsError, gateway_settings, settings

    try:
        config, operator_config = gateway_settings(), settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    serve(config, operator_config, port=port, bind_address=bind_address, namespaces=namespace or [])


DeviceNamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Device namespace.")]


def _parse_duration(text: str) -> float:
    """Seconds of a positive Go duration (30m, 24h, 1h30m); days (7d) are accepted too."""
    from edgeops.policy.cron import parse_duration

    days = text[:-1] if text.endswith("d") else None
    try:
        seconds = (
            float(days) * 86400
            if days is not None and days.replace(".", "", 1).isdigit()
            else parse_duration(text).total_seconds()
        )
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration like 30m, 24h or 7d") from None
    if seconds <= 0:
        raise typer.BadParameter(f"{text!r}: the duration must be positive")
    return seconds


def _parse_labels(items: list[str]) -> dict[str, str]:
    """``k=v`` items (each may hold several, comma-separated) as labels Kubernetes accepts."""
    from edgeops.policy.admission import label_key_error, label_value_error

    parsed: dict[str, str] = {}
    for item in items:
        for pair in item.split(","):
            key, sep, value = (part.strip() for part in pair.partition("="))
            if not sep or not key:
                raise typer.BadParameter(f"{pair!r} is not k=v", param_hint="--labels")
            problem = label_key_error(key) or label_value_error(value)
            if problem:
                raise typer.BadParameter(problem, param_hint="--labels")
            parsed[key] = value
    return parsed


@token_app.command("create")
def token_create(
    namespace: DeviceNamespaceOpt = "default",
    ttl: Annotated[str, typer.Option(help="How long the token is valid: 30m, 24h, 7d.")] = "24h",
    max_uses: Annotated[int, typer.Option(help="Devices it may enroll.", min=1)] = 1,
    labels: Annotated[
        list[str] | None, typer.Option("--labels", help="k=v label for enrolled devices.")
    ] = None,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Enrolled devices start Approved.")
    ] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create a bootstrap token (its hash in a Secret) and print it, once. With -o json|yaml:
    the token, its Secret, expiry, uses and labels as one document (for provisioning
    scripts)."""
    from datetime import UTC, datetime, timedelta

    from edgeops.gateway.tokens import new_token, token_data
    from edgeops.k8s import fleet

    parsed = _parse_labels(labels or [])
    lifetime = _parse_duration(ttl)
    token, secret = new_token()
    expires = datetime.now(UTC) + timedelta(seconds=lifetime)
    data = token_data(
        token, expires_at=expires, max_uses=max_uses, labels=parsed, auto_approve=auto_approve
    )
    fleet.create_token_secret(namespace, secret, data)
    if output is not Output.TABLE:
        emit(
            {
                "token": token,
                "namespace": namespace,
                "secret": secret,
                "expiresAt": data["expiresAt"],
                "maxUses": max_uses,
                "autoApprove": auto_approve,
                "labels": parsed,
            },
            output,
        )
        return
    console.print(f"Secret {namespace}/{secret}; expires {data['expiresAt']}; shown only once:")
    typer.echo(token)


def _set_approval(namespace: str, name: str, approval: str) -> None:
    from edgeops.k8s import fleet

    if fleet.read_device(namespace, name) is None:
        console.print(f"[red]error:[/] no device {namespace}/{name}")
        raise typer.Exit(1)
    fleet.patch_device(namespace, name, {"spec": {"approval": approval}})
    typer.echo(f"device {namespace}/{name}: spec.approval={approval}")


@device_app.command("approve")
def device_approve(
    name: Annotated[str, typer.Argument(help="Device name.")],
    namespace: DeviceNamespaceOpt = "default",
) -> None:
    """Let the gateway serve NAME (sets spec.approval: Approved)."""
    _set_approval(namespace, name, "Approved")


@device_app.command("reject")
def device_reject(
    name: Annotated[str, typer.Argument(help="Device name.")],
    namespace: DeviceNamespaceOpt = "default",
) -> None:
    """Refuse NAME (sets spec.approval: Rejected)."""
    _set_approval(namespace, name, "Rejected")


@fleet_app.command("simulate")
def fleet_simulate(
    gateway: Annotated[str, typer.Option(help="Gateway base URL.", envvar="EDGEOPS_GATEWAY_URL")],
    token: Annotated[
        list[str],
        typer.Option(
            help="Bootstrap token(s) with enough uses for --devices; repeat to spread "
            "enrollment over several (device i uses token i mod count)."
        ),
    ],
    trust_key: Annotated[
        list[str],
        typer.Option(
            "--trust-key",
            help='Bundle signing public key: base64, or JSON {"keyId": "base64"} as in '
            "ConfigMap edgeops-signing (key publicKeys.json).",
        ),
    ],
    namespace: DeviceNamespaceOpt = "default",
    devices: Annotated[int, typer.Option(help="Virtual devices.", min=1)] = 20,
    dataset_rows: Annotated[
        str,
        typer.Option(
            help="Input rows: builtin:basic-motions (samples extra) or a .csv/.jsonl export "
            "of a Dataset version (feature columns, plus --label-column)."
        ),
    ] = "builtin:basic-motions",
    label_column: Annotated[
        str | None, typer.Option(help="Ground-truth column of a file (labelled feedback).")
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(
            help="Model class names in output order, comma-separated "
            "(default: the dataset's labels, sorted)."
        ),
    ] = None,
    mcu_share: Annotated[float, typer.Option(help="Share of MCU devices.", min=0, max=1)] = 0.0,
    hardware: Annotated[
        list[str] | None,
        typer.Option(
            help="spec.hardware of Linux devices; repeat to mix (by a hash of the name). "
            "Must match a target of the model [default: raspberry-pi-4, the example's]."
        ),
    ] = None,
    mcu_hardware: Annotated[
        list[str] | None,
        typer.Option(help="spec.hardware of MCU devices [default: esp32-s3, the example's]."),
    ] = None,
    label_delay: Annotated[
        float,
        typer.Option(
            help="Seconds between a prediction and its ground truth reaching the device "
            "(delayed labelled feedback; 0: with the row).",
            min=0,
        ),
    ] = 0.0,
    drift: Annotated[
        list[str] | None,
        typer.Option(help="Data drift: feature=(+|-|*)value@seconds[,share]. Repeatable."),
    ] = None,
    concept_drift: Annotated[
        list[str] | None,
        typer.Option(help="Concept drift: region@seconds (labels move to the next class)."),
    ] = None,
    fail_version: Annotated[
        list[str] | None,
        typer.Option(help="version:share of devices failing that version's health check."),
    ] = None,
    offline: Annotated[
        list[str] | None,
        typer.Option(help="share[@seconds[+duration]] of devices losing the network."),
    ] = None,
    slow_network: Annotated[
        float, typer.Option(help="Milliseconds added to every request.", min=0)
    ] = 0.0,
    interval: Annotated[
        float | None,
        typer.Option(
            help="Seconds between cycles (default: the Devices' report interval).", min=0.1
        ),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
    ramp: Annotated[
        float, typer.Option(help="Seconds over which devices start (not all at once).", min=0)
    ] = 10.0,
    state_dir: Annotated[
        Path, typer.Option(help="One state directory per device under it.")
    ] = Path("fleet-sim"),
    prefix: Annotated[str, typer.Option(help="Device names: PREFIX-0000, ...")] = "sim",
    noise: Annotated[
        float, typer.Option(help="Per-device noise, in feature standard deviations.", min=0)
    ] = 0.05,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Run N virtual devices (real agents, one process) against a gateway, with injected
    drift and faults; shows devices by version and phase."""
    import asyncio
    import contextlib
    import signal

    from rich.live import Live

    from edgeops.device.agent import parse_trusted_keys
    from edgeops.device.injections import Injections
    from edgeops.device.simulator import (
        DEFAULT_HARDWARE,
        DEFAULT_MCU_HARDWARE,
        Simulation,
        SimulationConfig,
        load_rows,
        progress_table,
    )

    try:
        keys = parse_trusted_keys(trust_key)
        injections = Injections.parse(drift or [], concept_drift or [], fail_version or [],
                                      offline or [], slow_network)  # fmt: skip
        rows = load_rows(dataset_rows, label_column)
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from None
    names = [c.strip() for c in classes.split(",")] if classes else None
    if names is None and rows.labels is not None:
        names = sorted(set(rows.labels))
    config = SimulationConfig(
        gateway=gateway, namespace=namespace, devices=devices, token=token, trusted_keys=keys,
        rows=rows, state_root=state_dir, classes=names, prefix=prefix, mcu_share=mcu_share,
        hardware=hardware or DEFAULT_HARDWARE, mcu_hardware=mcu_hardware or DEFAULT_MCU_HARDWARE,
        noise=noise, injections=injections, label_delay_seconds=label_delay,
        interval_seconds=interval, ramp_seconds=ramp, seed=seed,
    )  # fmt: skip
    # Hundreds of devices logging to the terminal would tear the live table apart: the
    # log goes to a file, the table shows why devices wait (and the final summary).
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_file = state_dir / "simulator.log"
    logging.basicConfig(
        level=logging.INFO, filename=log_file,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )  # fmt: skip
    simulation = Simulation(config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        run = asyncio.create_task(simulation.run(stop, duration))
        with Live(progress_table(simulation), console=console, refresh_per_second=1) as live:
            while not run.done():
                await asyncio.wait({run}, timeout=1)
                live.update(progress_table(simulation))
        await run

    console.print(f"log: {log_file}; injections on command: edgeops fleet inject "
                  f"--state-dir {state_dir} ...")  # fmt: skip
    asyncio.run(main())
    console.line()
    console.print(progress_table(simulation, final=True))


@fleet_app.command("inject")
def fleet_inject(
    state_dir: Annotated[Path, typer.Option(help="The running simulator's --state-dir.")] = Path(
        "fleet-sim"
    ),
    drift: Annotated[
        list[str] | None,
        typer.Option(help="Start data drift: feature=(+|-|*)value[,share] (from now)."),
    ] = None,
    concept_drift: Annotated[
        list[str] | None, typer.Option(help="Start concept drift in a region: REGION.")
    ] = None,
    fail_version: Annotated[
        list[str] | None,
        typer.Option(help="version:share of devices failing that version's health check."),
    ] = None,
    offline: Annotated[
        list[str] | None, typer.Option(help="share[+duration] of devices losing the network.")
    ] = None,
    slow_network: Annotated[
        list[str] | None, typer.Option(help="Milliseconds added to every request.")
    ] = None,
    stop: Annotated[
        list[str] | None, typer.Option(help="Stop an injection by id (e.g. drift-2), or all.")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="Show the injections.")] = False,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the simulator's answer.", min=0)
    ] = 10.0,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Start or stop injections in a running `edgeops fleet simulate` (same --state-dir):
    each is a line in DIR/control.jsonl; the simulator answers in DIR/injections.json.
    ``--list -o json|yaml`` prints the injections as the simulator reported them."""
    from edgeops.device.control import Command, new_id, read_state, send, wait_for_answer

    starts = [
        ("drift", drift), ("concept-drift", concept_drift), ("fail-version", fail_version),
        ("offline", offline), ("slow-network", slow_network),
    ]  # fmt: skip
    commands = [Command(new_id(), kind=kind, spec=spec) for kind, specs in starts
                for spec in specs or []]  # fmt: skip
    commands += [Command(new_id(), stop=target) for target in stop or []]
    if not commands and not list_:
        raise typer.BadParameter("give an injection to start, --stop ID or --list")
    failed = False
    for command in commands:
        try:
            send(state_dir, command)
        except OSError as exc:
            console.print(f"[red]error:[/] {state_dir}: {exc}")
            raise typer.Exit(1) from None
        answer = wait_for_answer(state_dir, command.id, wait)
        what = f"{command.kind} {command.spec}" if command.stop is None else f"stop {command.stop}"
        if answer is None:
            console.print(f"[red]{what}: no answer within {wait:g} s[/] (is a simulator "
                          f"running with --state-dir {state_dir}?)")  # fmt: skip
            failed = True
        elif not answer.get("applied"):
            console.print(f"[red]{what}: refused:[/] {answer.get('message')}")
            failed = True
        elif output is Output.TABLE:
            typer.echo(str(answer.get("message")))
        else:  # stdout carries only the document
            console.print(str(answer.get("message")), markup=False)
    if list_:
        state = read_state(state_dir) or {}
        if output is not Output.TABLE:
            emit(list(state.get("injections") or []), output)
        for item in [] if output is not Output.TABLE else state.get("injections") or []:
            until = item.get("until")
            typer.echo(
                f"{item['id']}\t{item['kind']}\t{item['spec']}\tfrom {item['from']:.0f} s"
                + (f" until {until:.0f} s" if until is not None else "")
                + ("\tactive" if item.get("active") else "")
            )
    if failed:
        raise typer.Exit(1)


def _device_run() -> None:
    # The agent's command lives with the agent (its image entrypoint needs no operator
    # code); edgeops.device imports ONNX Runtime / LiteRT only when it loads a model.
    from edgeops.device.command import run

    device_app.command("run")(run)


_device_run()


@app.command("lineage")
def lineage(
    model: Annotated[str, typer.Argument(help="EdgeModel name.")],
    namespace: NamespaceOpt = "default",
    output: OutputOpt = Output.TABLE,
) -> None:
    """Which version, TrainingRun and dataset version each Device of MODEL runs."""

    from edgeops.api.constants import DEVICES, EDGE_MODELS
    from edgeops.k8s import fleet, objects
    from edgeops.policy import registry

    body = objects.read_custom(namespace, EDGE_MODELS, model)
    if body is None:
        console.print(f"[red]error:[/] EdgeModel {namespace}/{model} not found")
        raise typer.Exit(1)
    rows = registry.lineage(body, fleet.list_objects(namespace, DEVICES))
    if output is not Output.TABLE:
        fleet_version = (body.get("status") or {}).get("fleetVersion")
        emit(
            {"namespace": namespace, "model": model, "fleetVersion": fleet_version,
             "devices": rows},
            output,
        )  # fmt: skip
        return
    table = Table(
        title=f"{namespace}/{model}: fleet v{(body.get('status') or {}).get('fleetVersion', '-')}"
    )
    columns = ("device", "version", "rollout", "update", "trainingRun", "datasetVersion")
    for column in columns:
        table.add_column(column)
    for row in rows:
        dataset = row["datasetVersion"]
        row["datasetVersion"] = dataset[:12] if dataset else None
        table.add_row(*("-" if row[c] is None else str(row[c]) for c in columns))
    console.print(table)


@app.command("report")
def report(
    model: Annotated[str, typer.Argument(help="EdgeModel name.")],
    namespace: NamespaceOpt = "default",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Directory for index.html and its PNGs (default: report-MODEL)."
        ),
    ] = None,
    since: Annotated[
        str, typer.Option(help="How far back the plots go, as a Go duration (30m, 6h, 48h).")
    ] = "6h",
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            help="Prometheus base URL (default: EDGEOPS_PROMETHEUS_URL).",
            envvar="EDGEOPS_PROMETHEUS_URL",
        ),
    ] = None,
) -> None:
    """Write an HTML report of MODEL with PNG plots: drift per feature over time with its
    thresholds, fleet traffic by version, rollout progress per step, versions with their
    lineage (run, trigger, dataset version, gates, signature), devices and Events."""
    from datetime import UTC, datetime

    from edgeops.metrics.prometheus import Prometheus
    from edgeops.policy.cron import parse_duration
    from edgeops.report.gather import ModelNotFoundError, gather
    from edgeops.report.write import write_report
    from edgeops.settings import settings

    try:
        seconds = parse_duration(since).total_seconds()
        if seconds <= 0:
            raise ValueError(f"{since!r} is not a positive duration")
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from error
    config = settings()
    client = Prometheus(prometheus_url or config.prometheus_url, config.prometheus_timeout_seconds)
    try:
        data = gather(namespace, model, seconds, client, datetime.now(UTC))
    except (ModelNotFoundError, ValueError) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from error
    for problem in data.problems:
        console.print(f"[yellow]warning:[/] {problem}")
    index = write_report(data, output or Path(f"report-{model}"))
    typer.echo(str(index))


# --- FleetRollouts (every command is a spec change: kubectl or Git can do the same) --------

RolloutArg = Annotated[str, typer.Argument(help="FleetRollout name.")]
RolloutNamespaceOpt = Annotated[
    str, typer.Option("--namespace", "-n", help="Namespace of the FleetRollout.")
]


def _read_rollout(namespace: str, name: str) -> dict[str, Any]:
    from edgeops.api.constants import FLEET_ROLLOUTS
    from edgeops.k8s import objects

    body = objects.read_custom(namespace, FLEET_ROLLOUTS, name)
    if body is None:
        console.print(f"[red]error:[/] FleetRollout {namespace}/{name} not found")
        raise typer.Exit(1)
    return body


def _patch_rollout(namespace: str, name: str, spec: dict[str, Any], what: str) -> None:
    from kubernetes.client.rest import ApiException

    from edgeops.api.constants import FLEET_ROLLOUTS
    from edgeops.k8s import custom

    try:
        custom.patch_user_spec(namespace, FLEET_ROLLOUTS, name, spec)
    except ApiException as exc:
        console.print(f"[red]error:[/] FleetRollout {namespace}/{name}: {exc.reason} {exc.body}")
        raise typer.Exit(1) from exc
    typer.echo(f"fleetrollout {namespace}/{name}: {what}")


def rollout_view(body: dict[str, Any]) -> Any:
    """A rich renderable of a FleetRollout: phase, step, counts, measurements, message."""
    from rich.console import Group
    from rich.text import Text

    spec, status = body.get("spec") or {}, body.get("status") or {}
    meta = body.get("metadata") or {}
    steps = spec.get("steps") or []
    step = status.get("currentStep")
    phase = status.get("phase") or "Pending"
    if status.get("pausedReason"):
        phase += f" ({status['pausedReason']})"
    head = Text.assemble(
        (f"{meta.get('namespace')}/{meta.get('name')}", "bold"),
        f"  {spec.get('modelRef', {}).get('name')} v{status.get('stableVersion', '?')} -> "
        f"v{spec.get('version')}  phase ",
        (phase, "bold"),
        "  step " + (f"{step + 1}/{len(steps)} ({status.get('currentPercent')} %)"
                     if step is not None else "-"),
    )  # fmt: skip
    counts = Table(title="devices", show_edge=False)
    fields = ("targeted", "updated", "inProgress", "pending", "failed", "rolledBack",
              "timedOut", "incompatible", "offline", "overlapping")  # fmt: skip
    for field in fields:
        counts.add_column(field, justify="right")
    values = status.get("counts") or {}
    counts.add_row(*(str(values.get(f, 0)) for f in fields))
    measurements = Table(title="analysis", show_edge=False)
    for column in ("metric", "verdict", "value", "threshold", "samples", "passes", "measured"):
        measurements.add_column(column)
    for m in status.get("metrics") or []:
        value = m.get("value")
        measurements.add_row(
            m["name"] + (" (dry run)" if m.get("dryRun") else ""),
            str(m.get("verdict") or "-"),
            "-" if value is None else f"{value:g}",
            f"{m.get('op')} {m.get('threshold')}",
            str(m.get("samples", 0)),
            str(m.get("passes", 0)),
            str(m.get("measuredAt") or "-"),
        )
    parts: list[Any] = [head, counts]
    if status.get("metrics"):
        parts.append(measurements)
    if status.get("message"):
        parts.append(Text(status["message"]))
    if status.get("pauseId"):
        parts.append(Text(f"pauseId {status['pauseId']}: edgeops rollout resume to continue"))
    return Group(*parts)


def rollout_line(body: dict[str, Any]) -> str:
    """One line of a FleetRollout for ``status -w`` without a terminal: phase (and pause
    reason, pauseId), step and percent, the non-zero device counts, the last verdict per
    metric and the status message, never truncated or wrapped."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    steps = spec.get("steps") or []
    step = status.get("currentStep")
    phase = status.get("phase") or "Pending"
    if status.get("pausedReason"):
        phase += f" ({status['pausedReason']})"
    parts = [
        f"phase={phase}",
        (f"step={step + 1}/{len(steps)} ({status.get('currentPercent')} %)"
         if step is not None else "step=-"),
    ]  # fmt: skip
    counts = status.get("counts") or {}
    parts.extend(f"{k}={v}" for k, v in counts.items() if v)
    for metric in status.get("metrics") or []:
        value = metric.get("value")
        shown = "-" if value is None else f"{value:g}"
        parts.append(f"{metric.get('name')}={metric.get('verdict') or '-'}({shown})")
    if status.get("pauseId"):
        parts.append(f"pauseId={status['pauseId']}")
    if status.get("message"):
        parts.append(f"| {status['message']}")
    return " ".join(parts)


def rollout_document(body: dict[str, Any], output: str) -> str:
    """The FleetRollout as ``-o json`` or ``-o yaml`` prints it: apiVersion, kind,
    metadata (name, namespace, uid, generation, creationTimestamp), spec and status."""
    import json

    import yaml

    meta = body.get("metadata") or {}
    keep = ("name", "namespace", "uid", "generation", "resourceVersion", "creationTimestamp")
    document = {
        "apiVersion": body.get("apiVersion", "edgeops.dev/v1alpha1"),
        "kind": body.get("kind", "FleetRollout"),
        "metadata": {k: meta[k] for k in keep if k in meta},
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }
    if output == "json":
        return json.dumps(document, indent=2, sort_keys=False)
    return str(yaml.safe_dump(document, sort_keys=False)).rstrip("\n")


@rollout_app.command("status")
def rollout_status(
    name: RolloutArg,
    namespace: RolloutNamespaceOpt = "default",
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Redraw until it ends (Succeeded, Aborted, RolledBack). With -o, print the "
            "object again each time it changes (YAML documents separated by ---).",
        ),
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between redraws.", min=0.5)] = 2.0,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Phase, step, device counts and the last measurement per analysis metric; with
    ``-o json|yaml`` the object (metadata, spec, status) instead of the table."""
    import time

    from rich.live import Live

    from edgeops.api.fleetrollout import TERMINAL_PHASES

    body = _read_rollout(namespace, name)

    def ended(obj: dict[str, Any]) -> bool:
        return (obj.get("status") or {}).get("phase") in TERMINAL_PHASES

    if output is not Output.TABLE:
        shown: list[str | None] = []  # resourceVersions printed
        while True:
            version = (body.get("metadata") or {}).get("resourceVersion")
            if not shown or version != shown[-1]:
                if shown and output is Output.YAML:
                    typer.echo("---")
                typer.echo(rollout_document(body, output))
                shown.append(version)
            if not watch or ended(body):
                return
            time.sleep(interval)
            body = _read_rollout(namespace, name)
    if not watch:
        console.print(rollout_view(body))
        return
    if not console.is_terminal:
        # A pipe, a file or CI: a redrawn frame would leave only the last one and rich
        # would cut it to 80 columns; one full line per change keeps the history.
        last = ""
        while True:
            line = rollout_line(body)
            if line != last:
                typer.echo(line)
                last = line
            if ended(body):
                return
            time.sleep(interval)
            body = _read_rollout(namespace, name)
    with Live(rollout_view(body), console=console, refresh_per_second=4) as live:
        while not ended(body):
            time.sleep(interval)
            body = _read_rollout(namespace, name)
            live.update(rollout_view(body))


def ended_refusal(status: dict[str, Any], command: str) -> str | None:
    """Why ``command`` (pause, resume, approve, abort) cannot act on a rollout with this status,
    or None: a rollout that ended (Succeeded, Aborted, RolledBack) moves no device again,
    so the spec change would pass silently and change nothing (a retry is a new
    FleetRollout)."""
    from edgeops.api.fleetrollout import TERMINAL_PHASES

    phase = status.get("phase")
    if phase not in TERMINAL_PHASES:
        return None
    return (
        f"cannot {command}: the rollout ended ({phase}"
        + (f" at {status['finishedAt']}" if status.get("finishedAt") else "")
        + "); nothing would change. To move devices again, create a new FleetRollout"
    )


def _refuse_when_ended(namespace: str, name: str, status: dict[str, Any], command: str) -> None:
    problem = ended_refusal(status, command)
    if problem is not None:
        console.print(f"[red]error:[/] FleetRollout {namespace}/{name}: {problem}", soft_wrap=True)
        raise typer.Exit(1)


@rollout_app.command("pause")
def rollout_pause(name: RolloutArg, namespace: RolloutNamespaceOpt = "default") -> None:
    """Pause (spec.paused: true): no further step starts; devices already told go on."""
    _refuse_when_ended(namespace, name, _read_rollout(namespace, name).get("status") or {},
                       "pause")  # fmt: skip
    _patch_rollout(namespace, name, {"paused": True}, "spec.paused=true")


@rollout_app.command("resume")
def rollout_resume(name: RolloutArg, namespace: RolloutNamespaceOpt = "default") -> None:
    """Leave a pause: spec.paused: false, and for an automatic pause (Inconclusive,
    StepDeadline, FailureThreshold) spec.acknowledgedPause: status.pauseId. Idempotent."""
    status = _read_rollout(namespace, name).get("status") or {}
    _refuse_when_ended(namespace, name, status, "resume")
    spec: dict[str, Any] = {"paused": False}
    what = "spec.paused=false"
    if status.get("pauseId"):
        spec["acknowledgedPause"] = status["pauseId"]
        what += f", spec.acknowledgedPause={status['pauseId']}"
    _patch_rollout(namespace, name, spec, what)


@rollout_app.command("approve")
def rollout_approve(name: RolloutArg, namespace: RolloutNamespaceOpt = "default") -> None:
    """Approve the current step's manual pause (spec.approvedStep: status.currentStep)."""
    status = _read_rollout(namespace, name).get("status") or {}
    _refuse_when_ended(namespace, name, status, "approve")
    step = status.get("currentStep")
    if step is None:
        console.print(f"[red]error:[/] FleetRollout {namespace}/{name} has not started a step")
        raise typer.Exit(1)
    _patch_rollout(namespace, name, {"approvedStep": int(step)}, f"spec.approvedStep={step}")


@rollout_app.command("abort")
def rollout_abort(name: RolloutArg, namespace: RolloutNamespaceOpt = "default") -> None:
    """Abort (spec.abort: true, terminal): no further device is told to update."""
    _refuse_when_ended(namespace, name, _read_rollout(namespace, name).get("status") or {},
                       "abort")  # fmt: skip
    _patch_rollout(namespace, name, {"abort": True}, "spec.abort=true")


def main() -> None:
    """The ``edgeops`` command. An API server refusal no command handles itself (a missing
    namespace, RBAC) ends it with the server's message and exit code 1, not a traceback."""
    from kubernetes.client.rest import ApiException

    try:
        app()
    except ApiException as exc:
        console.print(
            f"[red]error:[/] the API server answered {exc.status}: {_server_message(exc)}"
        )
        raise SystemExit(1) from None


def _server_message(exc: Any) -> str:
    """The ``message`` of a Kubernetes Status body, else the HTTP reason."""
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.reason)
