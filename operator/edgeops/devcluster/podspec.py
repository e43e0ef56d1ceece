"""Turning a Pod's container spec into a local process: what can run, with which env and argv.

Pure functions of the pod and the objects it references, so they are unit-testable; the
node (`edgeops.devcluster.node`) does the I/O.
"""

from __future__ import annotations

import base64
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeops.api.constants import ImageRepositories

# Images the local node can run as processes in the project's Python environment, with the
# entrypoint each image's Dockerfile declares (used when a container gives no `command`).
IMAGE_ENTRYPOINTS: dict[str, list[str]] = {
    ImageRepositories.OPERATOR: ["edgeops", "operator", "run"],
    ImageRepositories.TRAINER: ["python", "-m", "edgeops.training"],
    ImageRepositories.GATEWAY: ["edgeops", "gateway", "run"],
    ImageRepositories.DEVICE_AGENT: ["python", "-m", "edgeops.device"],
    ImageRepositories.PREDICTOR: ["python", "-m", "edgeops.serving"],
}
SUPPORTED_VOLUME_TYPES = ("emptyDir", "secret", "configMap", "projected", "downwardAPI")
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")

Obj = Mapping[str, Any]


class ContainerConfigError(Exception):
    """A referenced Secret/ConfigMap/key is missing: the kubelet's CreateContainerConfigError."""


class UnsupportedPodError(Exception):
    """The pod needs something the local node cannot provide; `reason` is a CamelCase constant."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def image_repository(image: str) -> str:
    """`ghcr.io/edgeops/trainer:0.1@sha256:..` → `ghcr.io/edgeops/trainer`."""
    repo = image.split("@", 1)[0]
    last = repo.rsplit("/", 1)
    if ":" in last[-1]:
        repo = repo.rsplit(":", 1)[0]
    return repo


def check_runnable(pod: Obj) -> None:
    """Raises UnsupportedPodError with a clear reason for a pod the local node cannot run."""
    spec = pod.get("spec") or {}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        repo = image_repository(c.get("image", ""))
        if repo not in IMAGE_ENTRYPOINTS:
            raise UnsupportedPodError(
                "ImageNotRunnableLocally",
                f"container {c.get('name')}: image {c.get('image')!r} is not an EdgeOps image; "
                f"the local node runs only {', '.join(sorted(IMAGE_ENTRYPOINTS))}",
            )
    for v in spec.get("volumes") or []:
        kinds = [k for k in v if k != "name"]
        if not any(k in SUPPORTED_VOLUME_TYPES for k in kinds):
            raise UnsupportedPodError(
                "VolumeTypeUnsupported",
                f"volume {v.get('name')}: type {', '.join(kinds) or '?'} is not supported by the "
                f"local node (supported: {', '.join(SUPPORTED_VOLUME_TYPES)})",
            )


@dataclass
class Lookup:
    """How the node reads referenced objects; None means 'not found'."""

    secret: Callable[[str, str], Obj | None]
    config_map: Callable[[str, str], Obj | None]


def _secret_value(secret: Obj, key: str) -> str | None:
    data = secret.get("data") or {}
    if key in data:
        return base64.b64decode(data[key]).decode()
    string_data = secret.get("stringData") or {}
    value = string_data.get(key)
    return None if value is None else str(value)


def field_ref(pod: Obj, path: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise UnsupportedPodError("FieldRefUnsupported", f"fieldRef {path!r} is not supported")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined vars are substituted, `$$` escapes `$`."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(repl, value)


def container_env(pod: Obj, container: Obj, lookup: Lookup) -> dict[str, str]:
    """envFrom first, then env (later entries win), as the kubelet does."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "secretRef" in src:
            ref = src["secretRef"]
            secret = lookup.secret(namespace, ref["name"])
            if secret is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'secret "{ref["name"]}" not found')
            for key in {**(secret.get("data") or {}), **(secret.get("stringData") or {})}:
                value = _secret_value(secret, key)
                if value is not None:
                    env[prefix + key] = value
        elif "configMapRef" in src:
            ref = src["configMapRef"]
            cm = lookup.config_map(namespace, ref["name"])
            if cm is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'configmap "{ref["name"]}" not found')
            for key, value in (cm.get("data") or {}).items():
                env[prefix + key] = str(value)
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item or "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        vf = item["valueFrom"]
        if "secretKeyRef" in vf:
            ref = vf["secretKeyRef"]
            secret = lookup.secret(namespace, ref["name"])
            value = None if secret is None else _secret_value(secret, ref["key"])
            if value is None:
                if ref.get("optional"):
                    continue
                what = "secret" if secret is None else "key"
                raise ContainerConfigError(
                    f'{what} "{ref["name"] if secret is None else ref["key"]}" not found'
                    + ("" if secret is None else f' in secret "{ref["name"]}"')
                )
            env[name] = value
        elif "configMapKeyRef" in vf:
            ref = vf["configMapKeyRef"]
            cm = lookup.config_map(namespace, ref["name"])
            data = (cm or {}).get("data") or {}
            if ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(
                    f'configmap "{ref["name"]}" not found'
                    if cm is None
                    else f'key "{ref["key"]}" not found in configmap "{ref["name"]}"'
                )
            env[name] = str(data[ref["key"]])
        elif "fieldRef" in vf:
            env[name] = field_ref(pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            env[name] = _resource_value(container, vf["resourceFieldRef"]["resource"])
        else:
            raise UnsupportedPodError("EnvSourceUnsupported", f"env {name}: unsupported valueFrom")
    return env


def _resource_value(container: Obj, resource: str) -> str:
    kind, _, res = resource.partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(res)
    if value is None:
        # The kubelet reports node allocatable when no limit is set.
        return "2" if res == "cpu" else str(24 * 1024**3)
    return str(value)


def resolve_argv(
    container: Obj, env: Mapping[str, str], python_bin: Path | None = None
) -> list[str]:
    """The process argv: command/args with $(VAR) expansion, the image entrypoint by default."""
    entry = IMAGE_ENTRYPOINTS[image_repository(container.get("image", ""))]
    command = list(container.get("command") or entry)
    args = list(container.get("args") or [])
    argv = [expand(str(a), env) for a in command + args]
    bin_dir = (python_bin or Path(sys.executable)).parent
    exe = argv[0]
    if exe in ("python", "python3"):
        argv[0] = str(python_bin or sys.executable)
    elif "/" not in exe:
        found = shutil.which(exe, path=f"{bin_dir}:/usr/local/bin:/usr/bin:/bin")
        if found:
            argv[0] = found
    return argv


@dataclass
class VolumeFile:
    path: str
    content: bytes
    mode: int = 0o644


@dataclass
class VolumePlan:
    """What to materialise for one volume: an empty dir, or a set of files."""

    name: str
    empty_dir: bool = False
    files: list[VolumeFile] = field(default_factory=list)


def _project_items(data: Mapping[str, bytes], items: list[Obj] | None) -> list[VolumeFile]:
    if not items:
        return [VolumeFile(k, v) for k, v in sorted(data.items())]
    out = []
    for item in items:
        if item["key"] not in data:
            raise ContainerConfigError(f'key "{item["key"]}" not found')
        out.append(
            VolumeFile(item.get("path", item["key"]), data[item["key"]], item.get("mode", 0o644))
        )
    return out


def _secret_bytes(secret: Obj) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def plan_volume(
    pod: Obj, volume: Obj, lookup: Lookup, token: Callable[[Obj], str] | None = None
) -> VolumePlan:
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    plan = VolumePlan(name=volume["name"])
    if "emptyDir" in volume:
        plan.empty_dir = True
    elif "secret" in volume:
        src = volume["secret"]
        secret = lookup.secret(namespace, src["secretName"])
        if secret is None:
            if src.get("optional"):
                return plan
            raise ContainerConfigError(f'secret "{src["secretName"]}" not found')
        plan.files = _project_items(_secret_bytes(secret), src.get("items"))
    elif "configMap" in volume:
        src = volume["configMap"]
        cm = lookup.config_map(namespace, src["name"])
        if cm is None:
            if src.get("optional"):
                return plan
            raise ContainerConfigError(f'configmap "{src["name"]}" not found')
        data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
        plan.files = _project_items(data, src.get("items"))
    elif "downwardAPI" in volume:
        plan.files = _downward_files(pod, volume["downwardAPI"].get("items") or [])
    elif "projected" in volume:
        for source in volume["projected"].get("sources") or []:
            sub: Obj
            if "serviceAccountToken" in source:
                if token is None:
                    raise UnsupportedPodError(
                        "TokenUnavailable", "service account tokens unavailable"
                    )
                path = source["serviceAccountToken"].get("path", "token")
                plan.files.append(VolumeFile(path, token(source["serviceAccountToken"]).encode()))
                continue
            if "configMap" in source:
                sub = {"name": "_", "configMap": source["configMap"]}
            elif "secret" in source:
                sub = {
                    "name": "_",
                    "secret": {
                        "secretName": source["secret"]["name"],
                        **{k: v for k, v in source["secret"].items() if k != "name"},
                    },
                }
            elif "downwardAPI" in source:
                sub = {"name": "_", "downwardAPI": source["downwardAPI"]}
            else:
                raise UnsupportedPodError(
                    "VolumeTypeUnsupported", f"projected source {sorted(source)}"
                )
            plan.files.extend(plan_volume(pod, sub, lookup, token).files)
    return plan


def _downward_files(pod: Obj, items: list[Obj]) -> list[VolumeFile]:
    files = []
    for item in items:
        if "fieldRef" not in item:
            raise UnsupportedPodError("VolumeTypeUnsupported", "downwardAPI resourceFieldRef")
        files.append(
            VolumeFile(item["path"], field_ref(pod, item["fieldRef"]["fieldPath"]).encode())
        )
    return files


def host_safe_mounts(
    mounts: list[tuple[Path, str, bool]], needed: list[Path]
) -> tuple[list[tuple[Path, str, bool]], Path | None]:
    """The (source, mountPath, readOnly) bind mounts that hide none of the ``needed`` host
    paths, and the volume to use as ``TMPDIR`` instead of one mounted at ``/tmp``.

    Pods here share the host's filesystem: a volume mounted over ``/tmp`` (as a chart's
    read-only-root pods do) would hide the project's Python environment, the pod's own
    directory and the other volumes' sources whenever those live under ``/tmp`` (a CI
    checkout, a test's state directory). Such a mount is left out; for ``/tmp`` the
    program gets ``TMPDIR`` pointing at the volume, which is where Python's tempfile and
    most tools write.
    """
    kept: list[tuple[Path, str, bool]] = []
    tmpdir: Path | None = None
    for source, target, read_only in mounts:
        over = Path(target)
        if any(path == over or over in path.parents for path in needed):
            if over == Path("/tmp"):
                tmpdir = source
            continue
        kept.append((source, target, read_only))
    return kept, tmpdir
