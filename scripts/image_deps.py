"""The Python dependency set of each container image, so its growth is visible.

    .venv/bin/python scripts/image_deps.py [--json]

For each image under images/ (its Dockerfile installs ``.[<extras>]``), the closure of
EdgeOps's requirements with those extras, resolved against the distributions installed in
this environment (``importlib.metadata``; markers evaluated for this interpreter), and the
bytes their installed files take. It is the environment the image's build stage creates,
measured here without Docker: a requirement missing from this environment is listed as
missing (install the extra to measure it). Prints one line per image, largest first, with
the five largest distributions; ``--json`` prints the numbers for a CI artifact.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
_INSTALL = re.compile(r"pip install [^\n]*\"\.\[([a-z,-]+)\]\"")


@dataclass
class DependencySet:
    """One image's resolved distributions: name -> installed bytes; missing requirements."""

    image: str
    extras: list[str]
    sizes: dict[str, int] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def image_extras(root: Path = ROOT) -> dict[str, list[str]]:
    """Image directory name -> the extras its Dockerfile installs."""
    found = {}
    for dockerfile in sorted(root.glob("images/*/Dockerfile")):
        match = _INSTALL.search(dockerfile.read_text())
        if match is None:
            raise SystemExit(f'{dockerfile}: no `pip install ".[extras]"` line')
        found[dockerfile.parent.name] = match.group(1).split(",")
    return found


def _installed_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        try:
            total += Path(str(dist.locate_file(file))).stat().st_size
        except OSError:
            continue
    return total


def resolve(image: str, extras: list[str], project: str = "edgeops") -> DependencySet:
    """The closure of ``project[extras]``'s requirements over installed distributions."""
    result = DependencySet(image, extras)
    pending: list[tuple[str, frozenset[str]]] = [(project, frozenset(extras))]
    done: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, wanted = pending.pop()
        key = (canonicalize_name(name), wanted)
        if key in done:
            continue
        done.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            result.missing.add(name)
            continue
        if canonicalize_name(name) != canonicalize_name(project):
            result.sizes[canonicalize_name(name)] = _installed_bytes(dist)
        for text in dist.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            environments: list[dict[str, str]] = [
                {**{k: str(v) for k, v in default_environment().items()}, "extra": e}
                for e in ("", *wanted)
            ]
            if marker is not None and not any(marker.evaluate(env) for env in environments):
                continue
            pending.append((requirement.name, frozenset(requirement.extras)))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    sets = sorted(
        (resolve(image, extras) for image, extras in image_extras().items()),
        key=lambda s: -s.total_bytes,
    )
    if args.json:
        print(json.dumps({s.image: {"extras": s.extras, "distributions": len(s.sizes),
                                    "bytes": s.total_bytes, "missing": sorted(s.missing)}
                          for s in sets}, indent=2))  # fmt: skip
        return 0
    for s in sets:
        largest = sorted(s.sizes.items(), key=lambda item: -item[1])[:5]
        top = ", ".join(f"{n} {b / 2**20:.0f}" for n, b in largest)
        line = (
            f"{s.image:<13} .[{','.join(s.extras)}]: {len(s.sizes):>3} distributions, "
            f"{s.total_bytes / 2**20:>7.1f} MiB (largest, MiB: {top})"
        )
        if s.missing:
            line += f"; not installed here: {', '.join(sorted(s.missing))}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
