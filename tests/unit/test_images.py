"""The container images, without a Docker engine: each Dockerfile is multi-stage on a pinned
base, installs only its extra, runs as a numeric non-root user, declares the entrypoint the
devcluster's local node runs for that image, and that entrypoint starts and answers
``--help`` in the project environment. ``.dockerignore`` lets in only what they copy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from edgeops.api.constants import ImageRepositories
from edgeops.devcluster.podspec import IMAGE_ENTRYPOINTS

ROOT = Path(__file__).resolve().parents[2]
#: image directory -> (repository, the extras it installs)
IMAGES = {
    "operator": (ImageRepositories.OPERATOR, ["samples"]),
    "trainer": (ImageRepositories.TRAINER, ["train"]),
    "gateway": (ImageRepositories.GATEWAY, ["gateway"]),
    "device-agent": (ImageRepositories.DEVICE_AGENT, ["device"]),
    "predictor": (ImageRepositories.PREDICTOR, ["serving"]),
}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for line in dockerfile.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            logical.append(current)
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (a FROM starts one); ARGs before it first."""
    found: list[list[tuple[str, str]]] = [[]]
    for op, args in instructions(dockerfile):
        if op == "FROM":
            found.append([])
        found[-1].append((op, args))
    return found


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile(image: str) -> None:
    dockerfile = ROOT / "images" / image / "Dockerfile"
    preamble, *built = stages(dockerfile)
    # A pinned base (patch release), shared by both stages.
    assert preamble == [("ARG", "PYTHON_IMAGE=python:3.11.11-slim-bookworm")]
    assert [s[0] for s in built] == [
        ("FROM", "${PYTHON_IMAGE} AS build"),
        ("FROM", "${PYTHON_IMAGE}"),
    ]
    build, runtime = built
    # Only its own extras, into a virtual environment the runtime stage copies.
    installs = [a for op, a in build if op == "RUN" and "pip install" in a]
    extras = sorted(re.findall(r"\.\[([a-z,-]+)\]", " ".join(installs))[0].split(","))
    assert extras == IMAGES[image][1]
    defined = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(extras) <= set(defined["optional-dependencies"])
    assert ("COPY", "--from=build /opt/edgeops /opt/edgeops") in runtime
    assert not any(op == "RUN" and "pip" in a for op, a in runtime)
    # Non-root, numerically (runAsNonRoot can only check a number).
    users = [a for op, a in runtime if op == "USER"]
    assert users == ["65532:65532"]
    # The entrypoint the devcluster's local node runs for this image.
    entrypoints = [json.loads(a) for op, a in runtime if op == "ENTRYPOINT"]
    assert entrypoints == [IMAGE_ENTRYPOINTS[IMAGES[image][0]]]


@pytest.mark.parametrize("image", IMAGES)
def test_entrypoint_answers_help(image: str) -> None:
    entry = IMAGE_ENTRYPOINTS[IMAGES[image][0]]
    # `python` and the `edgeops` console script, as this environment has them.
    argv = [sys.executable, *entry[1:]] if entry[0] == "python" else [sys.executable, "-m", *entry]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEOPS_")}
    done = subprocess.run(
        [*argv, "--help"], capture_output=True, text=True, timeout=180, env=env, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage" in done.stdout.lower(), done.stdout


def test_dockerignore_admits_only_what_the_images_copy() -> None:
    patterns = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.removeprefix("!").rstrip("/")
            if fnmatch(path, bare) or path.startswith(bare + "/"):
                verdict = not negated
        return verdict

    copied = {"pyproject.toml", "README.md", "operator/edgeops/cli.py"}
    assert not [p for p in copied if ignored(p)]
    for heavy in (".git/config", ".venv/bin/python", "tests/conftest.py", "charts/edgeops"):
        assert ignored(heavy), heavy


def test_dependency_set_sizes_are_printed() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "image_deps.py"), "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    sizes = json.loads(done.stdout)
    assert set(sizes) == set(IMAGES)
    for image, numbers in sizes.items():
        assert numbers["extras"] == IMAGES[image][1]
        assert numbers["distributions"] > 10 and numbers["bytes"] > 1_000_000
    # The point of the extras: the gateway's set is the smallest, the trainer's the largest.
    by_size = sorted(sizes, key=lambda i: sizes[i]["bytes"])
    assert by_size[0] == "gateway" and by_size[-1] == "trainer"
