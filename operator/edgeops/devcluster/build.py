"""Builds the Go components of the devcluster once and caches them by version.

kube-apiserver, kube-controller-manager and kubectl come from the `k8s.io/kubernetes`
module: a tiny wrapper module requires it at a pinned release and replaces each staging
module (`k8s.io/api`, ...) with its published `v0.x.y` release, because the kubernetes
go.mod points those at `./staging/...` paths that do not exist in the module zip.
MinIO has no replace directives, so plain `go install module@version` works for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from edgeops.devcluster.paths import cache_root

KUBERNETES_VERSION = "v1.37.2"
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
HELM_MODULE = "helm.sh/helm/v3"
HELM_VERSION = "v3.22.0"
KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kubectl")
# Staging modules that are published only for examples and are never built here.
_UNPUBLISHED_STAGING = ("k8s.io/sample-cli-plugin", "k8s.io/sample-controller")

Reporter = Callable[[str], None]


class BuildError(RuntimeError):
    """A Go build of a devcluster component failed; the message carries the tail of its log."""


def _stderr_reporter(message: str) -> None:
    print(f"[edgeops dev] {message}", file=sys.stderr, flush=True)


def go_env() -> dict[str, str]:
    """Go caches under the user cache dir, so a second run (and CI's next run) is fast."""
    go_root = cache_root() / "go"
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(go_root / "mod"),
        GOCACHE=str(go_root / "build"),
        CGO_ENABLED="0",
        GOFLAGS="-mod=mod -buildvcs=false",
    )
    return env


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time per user cache: two `dev up`s (e.g. two test sessions) must not
    share a half-written output directory."""
    path = cache_root() / ".build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the Go toolchain ('go') is not on PATH; install Go 1.26 or newer")
    return go


# Bumped when the build itself changes (flags), so cached binaries of an older recipe rebuild.
KUBE_BUILD_RECIPE = 2


def kube_bin_dir(version: str = KUBERNETES_VERSION) -> Path:
    return cache_root() / "bin" / f"kubernetes-{version}-r{KUBE_BUILD_RECIPE}"


def version_ldflags(version: str) -> str:
    """What the Kubernetes release build stamps, so `kubectl version` and /version tell the
    truth instead of v0.0.0-master."""
    major, minor = version.removeprefix("v").split(".")[:2]
    stamps = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "gitCommit": f"k8s.io/kubernetes@{version}",
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in stamps.items()]
    return " ".join(flags)


def minio_bin_dir(version: str = MINIO_VERSION) -> Path:
    return cache_root() / "bin" / f"minio-{version}"


def _staging_modules(kubernetes_gomod: Path) -> list[str]:
    pattern = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/")
    modules = []
    for line in kubernetes_gomod.read_text().splitlines():
        match = pattern.match(line)
        if match and match.group(1) not in _UNPUBLISHED_STAGING:
            modules.append(match.group(1))
    return modules


def wrapper_gomod(version: str, staging: list[str]) -> str:
    """go.mod of the wrapper module that builds the kubernetes commands at `version`."""
    staging_version = "v0." + version.removeprefix("v1.")
    replaces = "\n".join(f"\t{m} => {m} {staging_version}" for m in staging)
    return (
        "module edgeops.dev/kubebuild\n\n"
        "go 1.26\n\n"
        "godebug default=go1.26\n\n"
        f"require k8s.io/kubernetes {version}\n\n"
        f"replace (\n{replaces}\n)\n"
    )


def progress_line(what: str, compiled: int, total: int | None, elapsed: float) -> str:
    """One progress report of a Go build: a bar and percentage when the total is known.

    `compiled` counts the package lines `go build -v` printed so far; `elapsed` is in
    seconds. The percentage stops at 99 until the build exits, because linking the
    commands comes after the last package and can take minutes.
    """
    if not total:
        return f"  ... {what}: {compiled} packages compiled, {elapsed:.0f}s elapsed"
    done = min(compiled, total)
    percent = min(99, done * 100 // total)
    filled = percent * 20 // 100
    bar = "#" * filled + "-" * (20 - filled)
    return f"  ... {what}: [{bar}] {percent:3d}% ({done}/{total} packages, {elapsed:.0f}s elapsed)"


def count_stale_packages(
    packages: list[str], cwd: Path, flags: list[str], extra_env: dict[str, str] | None = None
) -> int | None:
    """How many packages a `go build flags packages` in `cwd` will compile, or None.

    Asks `go list -deps` for the packages whose cached build is stale (the `Stale` field of
    `go help list`). Returns None when go list fails (e.g. `module@version` arguments, which
    only `go install` accepts), so progress falls back to counts without a percentage.
    """
    result = subprocess.run(
        [_go(), "list", "-deps", *flags, "-f", "{{if .Stale}}stale{{end}}", *packages],
        cwd=cwd,
        env={**go_env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    return sum(1 for line in result.stdout.splitlines() if line == "stale")


def _run_go_build(
    args: list[str],
    cwd: Path,
    what: str,
    log_path: Path,
    report: Reporter,
    extra_env: dict[str, str] | None = None,
    total: int | None = None,
) -> None:
    """Runs `go build -v`-style commands, reporting progress every 30 s.

    `total` is the number of packages the build will compile (see `count_stale_packages`);
    when known, progress lines carry a percentage, otherwise only the count so far.
    """
    size = f", {total} packages to compile" if total else ""
    report(f"building {what} (first run only; this takes several minutes{size}, log: {log_path})")
    started = time.monotonic()
    compiled = 0
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env={**go_env(), **(extra_env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            nonlocal compiled
            for line in stream:
                log.write(line)
                if not line.startswith("go: "):
                    compiled += 1

        # Reading in a thread lets progress be reported during silent phases (linking).
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        while reader.is_alive():
            reader.join(timeout=30)
            if reader.is_alive():
                report(progress_line(what, compiled, total, time.monotonic() - started))
        code = proc.wait()
    if code != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise BuildError(f"building {what} failed (exit {code}); end of {log_path}:\n{tail}")
    report(f"built {what} in {time.monotonic() - started:.0f}s")


def ensure_kubernetes(
    version: str = KUBERNETES_VERSION, report: Reporter = _stderr_reporter
) -> Path:
    """Returns the directory holding kube-apiserver, kube-controller-manager and kubectl."""
    out = kube_bin_dir(version)
    if all((out / cmd).is_file() for cmd in KUBE_COMMANDS):
        return out
    with _build_lock():
        if all((out / cmd).is_file() for cmd in KUBE_COMMANDS):
            return out  # built by another process while we waited
        _build_kubernetes(version, out, report)
    return out


def _build_kubernetes(version: str, out: Path, report: Reporter) -> None:
    work = cache_root() / "kube-build" / version
    work.mkdir(parents=True, exist_ok=True)
    go = _go()
    report(f"fetching k8s.io/kubernetes@{version} from the Go module proxy")
    info = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        cwd=work,
        env=go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if info.returncode != 0:
        raise BuildError(f"go mod download k8s.io/kubernetes@{version} failed: {info.stderr}")
    gomod = Path(json.loads(info.stdout)["GoMod"])
    (work / "go.mod").write_text(wrapper_gomod(version, _staging_modules(gomod)))
    tmp_out = work / "bin.partial"
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir()
    packages = [f"k8s.io/kubernetes/cmd/{cmd}" for cmd in KUBE_COMMANDS]
    report("counting the packages to compile (go list; downloads the modules first)")
    total = count_stale_packages(packages, work, ["-trimpath"])
    _run_go_build(
        [
            go,
            "build",
            "-v",
            "-trimpath",
            f"-ldflags={version_ldflags(version)}",
            "-o",
            str(tmp_out),
            *packages,
        ],
        work,
        f"Kubernetes {version} ({', '.join(KUBE_COMMANDS)})",
        work / "build.log",
        report,
        total=total,
    )
    # Publish the whole directory at once so an interrupted build is never mistaken for done.
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp_out.rename(out)


def _go_install(package: str, command: str, label: str, out: Path, report: Reporter) -> Path:
    """`go install package` into `out` (a versioned cache dir), published atomically."""
    binary = out / command
    if binary.is_file():
        return binary
    with _build_lock():
        if not binary.is_file():  # another process may have built it while we waited
            _install_into(package, command, label, out, report)
    return binary


def _install_into(package: str, command: str, label: str, out: Path, report: Reporter) -> None:
    work = cache_root() / f"{command}-build"
    work.mkdir(parents=True, exist_ok=True)
    tmp_out = work / "bin.partial"
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir()
    args = [_go(), "install", "-v", "-trimpath", "-ldflags=-s -w", package]
    # go install has no -o: GOBIN decides where the binary lands.
    _run_go_build(args, work, label, work / "build.log", report, {"GOBIN": str(tmp_out)})
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp_out.rename(out)


def ensure_minio(version: str = MINIO_VERSION, report: Reporter = _stderr_reporter) -> Path:
    """The minio server binary, built from its Go module (no replace directives)."""
    return _go_install(
        f"{MINIO_MODULE}@{version}", "minio", f"MinIO {version}", minio_bin_dir(version), report
    )


def ensure_helm(version: str = HELM_VERSION, report: Reporter = _stderr_reporter) -> Path:
    """The helm CLI, built from its Go module (used to render and check the chart)."""
    return _go_install(
        f"{HELM_MODULE}/cmd/helm@{version}",
        "helm",
        f"Helm {version}",
        cache_root() / "bin" / f"helm-{version}",
        report,
    )


def ensure_all(report: Reporter = _stderr_reporter) -> dict[str, Path]:
    kube = ensure_kubernetes(report=report)
    return {
        "kube-apiserver": kube / "kube-apiserver",
        "kube-controller-manager": kube / "kube-controller-manager",
        "kubectl": kube / "kubectl",
        "minio": ensure_minio(report=report),
        "helm": ensure_helm(report=report),
    }


if __name__ == "__main__":
    for name, path in ensure_all().items():
        print(f"{name}: {path}")
