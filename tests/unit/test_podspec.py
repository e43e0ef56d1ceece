"""How the local node turns a container spec into a process (pure functions)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from edgeops.devcluster import podspec


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


SECRETS = {("ns", "creds"): {"data": {"token": _b64("s3cr3t"), "user": _b64("bob")}}}
CONFIG_MAPS = {("ns", "cfg"): {"data": {"MODE": "fast", "LEVEL": "3"}}}
LOOKUP = podspec.Lookup(
    secret=lambda ns, name: SECRETS.get((ns, name)),
    config_map=lambda ns, name: CONFIG_MAPS.get((ns, name)),
)
POD: dict[str, Any] = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
    "spec": {"nodeName": "n1", "containers": []},
}


@pytest.mark.parametrize(
    ("image", "repo"),
    [
        ("ghcr.io/edgeops/trainer:0.1", "ghcr.io/edgeops/trainer"),
        ("ghcr.io/edgeops/trainer@sha256:abc", "ghcr.io/edgeops/trainer"),
        ("ghcr.io/edgeops/trainer:0.1@sha256:abc", "ghcr.io/edgeops/trainer"),
        ("localhost:5000/edgeops/trainer", "localhost:5000/edgeops/trainer"),
        ("nginx", "nginx"),
    ],
)
def test_image_repository(image: str, repo: str) -> None:
    assert podspec.image_repository(image) == repo


def test_foreign_image_and_hostpath_are_refused_with_reasons() -> None:
    pod = {**POD, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}
    with pytest.raises(podspec.UnsupportedPodError) as err:
        podspec.check_runnable(pod)
    assert err.value.reason == "ImageNotRunnableLocally" and "nginx:1" in err.value.message
    pod = {
        **POD,
        "spec": {
            "containers": [{"name": "c", "image": "ghcr.io/edgeops/trainer:1"}],
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        },
    }
    with pytest.raises(podspec.UnsupportedPodError) as err:
        podspec.check_runnable(pod)
    assert err.value.reason == "VolumeTypeUnsupported" and "hostPath" in err.value.message


def test_env_order_sources_and_expansion() -> None:
    container = {
        "envFrom": [
            {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
            {"secretRef": {"name": "creds"}},
        ],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "$(A)-$(MISSING)-$$(A)"},
            {"name": "TOK", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "LVL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LEVEL"}}},
            {"name": "user", "value": "override"},
        ],
    }
    env = podspec.container_env(POD, container, LOOKUP)
    assert env["CFG_MODE"] == "fast"
    assert env["B"] == "1-$(MISSING)-$(A)"
    assert env["TOK"] == "s3cr3t"
    assert env["NS"] == "ns" and env["APP"] == "x" and env["LVL"] == "3"
    assert env["user"] == "override"  # env wins over envFrom


def test_missing_references_raise_config_errors_unless_optional() -> None:
    ref = {"name": "T", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "t"}}}
    with pytest.raises(podspec.ContainerConfigError, match='secret "nope" not found'):
        podspec.container_env(POD, {"env": [ref]}, LOOKUP)
    missing_key = {"name": "T", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "zz"}}}
    with pytest.raises(podspec.ContainerConfigError, match='key "zz" not found in secret "creds"'):
        podspec.container_env(POD, {"env": [missing_key]}, LOOKUP)
    ref["valueFrom"]["secretKeyRef"]["optional"] = True
    assert "T" not in podspec.container_env(POD, {"env": [ref]}, LOOKUP)


def test_argv_uses_entrypoint_and_project_python(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python"
    default = podspec.resolve_argv({"image": "ghcr.io/edgeops/trainer:1"}, {}, python)
    assert default == [str(python), "-m", "edgeops.training"]
    custom = podspec.resolve_argv(
        {"image": "ghcr.io/edgeops/trainer:1", "command": ["python", "-c"], "args": ["$(X)"]},
        {"X": "print(1)"},
        python,
    )
    assert custom == [str(python), "-c", "print(1)"]


def test_volume_plans() -> None:
    secret = podspec.plan_volume(
        POD,
        {
            "name": "s",
            "secret": {"secretName": "creds", "items": [{"key": "token", "path": "t/tok"}]},
        },
        LOOKUP,
    )
    assert [(f.path, f.content) for f in secret.files] == [("t/tok", b"s3cr3t")]
    projected = podspec.plan_volume(
        POD,
        {
            "name": "p",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"configMap": {"name": "cfg", "items": [{"key": "MODE", "path": "mode"}]}},
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ]
            },
        },
        LOOKUP,
        token=lambda src: "a.b.c",
    )
    assert {f.path: f.content for f in projected.files} == {
        "token": b"a.b.c",
        "mode": b"fast",
        "namespace": b"ns",
    }
    assert podspec.plan_volume(POD, {"name": "e", "emptyDir": {}}, LOOKUP).empty_dir
    with pytest.raises(podspec.ContainerConfigError):
        podspec.plan_volume(POD, {"name": "c", "configMap": {"name": "absent"}}, LOOKUP)


def test_a_volume_over_tmp_becomes_tmpdir_when_it_would_hide_the_host() -> None:
    venv, pod = Path("/tmp/ci/.venv"), Path("/tmp/home/node/pods/p")
    token, scratch = pod / "volumes" / "token", pod / "volumes" / "tmp"
    mounts = [
        (scratch, "/tmp", False),
        (token, "/run/secrets/kubernetes.io/serviceaccount", True),
        (pod / "volumes" / "data", "/data", False),
    ]
    kept, tmpdir = podspec.host_safe_mounts(mounts, [venv, pod, token])
    assert tmpdir == scratch
    assert [m[1] for m in kept] == ["/run/secrets/kubernetes.io/serviceaccount", "/data"]
    # Nothing the node needs under /tmp: the mount is kept as asked.
    kept, tmpdir = podspec.host_safe_mounts(mounts, [Path("/work/.venv"), Path("/srv/pod")])
    assert tmpdir is None and kept == mounts
