"""The `edgeops` command: the local control plane (`edgeops dev ...`) and the operator."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

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
console = Console(stderr=True)

NameOpt = Annotated[str, typer.Option("--name", help="Cluster name (one state dir each).")]
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
) -> None:
    """Build (first run only) and start etcd, kube-apiserver, kube-controller-manager, the
    local node, MinIO, Prometheus and the operator. Idempotent."""
    cluster = _cluster(name, home)
    try:
        cluster.up(
            with_operator=operator, report=lambda m: console.print(f"[cyan]edgeops dev[/] {m}")
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
def dev_status(name: NameOpt = "default", home: HomeOpt = None) -> None:
    """Show each component, its PID, state and endpoint; exit 1 if any has crashed."""
    cluster = _cluster(name, home)
    table = Table(title=f"devcluster {name} ({cluster.dir})")
    for col in ("component", "pid", "state", "endpoint", "log"):
        table.add_column(col)
    crashed = False
    for s in cluster.status():
        if s.pid is None:
            state = "not started"
        elif not s.running:
            state, crashed = "[red]CRASHED[/]", True
        else:
            state = "[green]ready[/]" if s.ready else "[yellow]starting[/]"
        table.add_row(s.name, str(s.pid or "-"), state, s.endpoint, str(s.log))
    Console().print(table)
    if crashed:
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
    health_port: Annotated[int, typer.Option(help="Liveness endpoint port (/healthz).")] = 8080,
    metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics port.")] = 9090,
    bind_address: Annotated[
        str, typer.Option(help="Address for health and metrics.")
    ] = "127.0.0.1",
    peering: Annotated[bool, typer.Option(help="Kopf peering for several replicas.")] = False,
    namespace: Annotated[str | None, typer.Option(help="Watch one namespace only.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the EdgeOps operator (Kopf) against the current kubeconfig or in-cluster config."""
    from edgeops.controllers import runtime

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    runtime.run(
        health_port=health_port,
        metrics_port=metrics_port,
        peering=peering,
        namespace=namespace,
        bind_address=bind_address,
    )


def main() -> None:
    app()
