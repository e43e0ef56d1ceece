"""Built-in datasets: real recorded data shipped inside installed PyPI packages.

Nothing is downloaded at run time. Files are located with importlib's find_spec, which
finds a package without importing it (aeon and scikit-learn are slow to import). They come
with the ``samples`` extra (``pip install edgeops[samples]``).

Provenance and licenses:

* basic-motions - aeon, datasets/data/BasicMotions/*.ts. UEA multivariate archive
  (Bagnall et al.), shipped in aeon under BSD-3-Clause. Smartwatch IMU: 3-axis
  accelerometer and gyroscope at 10 Hz for 10 s; standing, walking, running, badminton.
* italy-power-demand - aeon, datasets/data/ItalyPowerDemand/*.ts. UCR archive; 24 hourly
  electricity loads per day in Italy (1997); October-March vs April-September.
* seattle-weather - vega_datasets, _data/seattle-weather.csv. Public-domain NOAA data, MIT
  package; daily precipitation, temperatures, wind and weather type, Seattle 2012-2015.
* digits - scikit-learn, datasets/data/digits.csv.gz. UCI optical recognition of
  handwritten digits (CC BY 4.0), BSD-3-Clause package; 8x8 images, 16 grey levels.

basic-motions is the demo use case (activity recognition on a microcontroller): each
recording becomes one row of per-channel summary features (mean, std, min, max of each
of the six IMU channels), which is what a small on-device model consumes.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeops.api import BuiltinDatasetName, DatasetSchema, Feature

from .rows import Row

IMU_CHANNELS = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
STATS = ("mean", "std", "min", "max")


class BuiltinUnavailableError(Exception):
    """The package that ships the data is not installed."""


@dataclass(frozen=True)
class BuiltinData:
    name: str
    schema: DatasetSchema
    files: tuple[Path, ...]
    reader: Callable[[], Iterator[Row]]
    origin: str

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.name.encode())
        for path in self.files:
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def rows(self) -> Iterator[Row]:
        return self.reader()


def load(name: BuiltinDatasetName) -> BuiltinData:
    if name == "basic-motions":
        files = _files(
            "aeon",
            "datasets/data/BasicMotions/BasicMotions_TRAIN.ts",
            "datasets/data/BasicMotions/BasicMotions_TEST.ts",
        )
        return BuiltinData(
            name,
            _basic_motions_schema(),
            files,
            lambda: _basic_motions_rows(files),
            "UEA BasicMotions via aeon (BSD-3-Clause)",
        )
    if name == "italy-power-demand":
        files = _files(
            "aeon",
            "datasets/data/ItalyPowerDemand/ItalyPowerDemand_TRAIN.ts",
            "datasets/data/ItalyPowerDemand/ItalyPowerDemand_TEST.ts",
        )
        schema = DatasetSchema(
            features=[Feature(name=f"h{h:02d}", type="float") for h in range(24)],
            label="season",
            row_key=["case"],
        )
        return BuiltinData(
            name,
            schema,
            files,
            lambda: _italy_rows(files),
            "UCR ItalyPowerDemand via aeon (BSD-3-Clause)",
        )
    if name == "seattle-weather":
        files = _files("vega_datasets", "_data/seattle-weather.csv")
        schema = DatasetSchema(
            features=[
                Feature(name="precipitation", type="float", min=0),
                Feature(name="temp_max", type="float", min=-40, max=60),
                Feature(name="temp_min", type="float", min=-40, max=60),
                Feature(name="wind", type="float", min=0),
            ],
            label="weather",
            slice_columns=["year"],
            row_key=["date"],
        )
        return BuiltinData(
            name,
            schema,
            files,
            lambda: _seattle_rows(files[0]),
            "NOAA via vega_datasets (public domain data, MIT package)",
        )
    files = _files("sklearn", "datasets/data/digits.csv.gz")
    schema = DatasetSchema(
        features=[Feature(name=f"px{i:02d}", type="int", min=0, max=16) for i in range(64)],
        label="digit",
    )
    return BuiltinData(
        name,
        schema,
        files,
        lambda: _digits_rows(files[0]),
        "UCI optical digits via scikit-learn (CC BY 4.0)",
    )


def _files(package: str, *relative: str) -> tuple[Path, ...]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BuiltinUnavailableError(
            f"package {package!r} is not installed (pip install 'edgeops[samples]')"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    paths = tuple(root / r for r in relative)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BuiltinUnavailableError(f"{package} does not ship {', '.join(missing)}")
    return paths


def parse_ts(text: str) -> Iterator[tuple[list[list[float]], str]]:
    """Cases of a .ts file (sktime/aeon format): channels separated by ':', values by ',',
    the class label last. Only equal-length data without timestamps, as shipped here."""
    in_data = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *channels, label = line.split(":")
        yield [[_ts_value(v) for v in ch.split(",")] for ch in channels], label.strip()


def _ts_value(text: str) -> float:
    return math.nan if text.strip() == "?" else float(text)


def _basic_motions_schema() -> DatasetSchema:
    return DatasetSchema(
        features=[Feature(name=f"{ch}_{s}", type="float") for ch in IMU_CHANNELS for s in STATS],
        label="activity",
        slice_columns=["recording_set"],
        row_key=["case"],
    )


def _basic_motions_rows(files: tuple[Path, ...]) -> Iterator[Row]:
    for path in files:
        part = "train" if path.stem.endswith("TRAIN") else "test"
        for index, (channels, label) in enumerate(parse_ts(path.read_text())):
            row: dict[str, Any] = {
                "case": f"{part}-{index:03d}",
                "activity": label,
                "recording_set": part,
            }
            for name, values in zip(IMU_CHANNELS, channels, strict=True):
                row.update(_summary(name, values))
            yield row


def _summary(name: str, values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return {
        f"{name}_mean": round(mean, 6),
        f"{name}_std": round(std, 6),
        f"{name}_min": min(values),
        f"{name}_max": max(values),
    }


def _italy_rows(files: tuple[Path, ...]) -> Iterator[Row]:
    for path in files:
        part = "train" if path.stem.endswith("TRAIN") else "test"
        for index, (channels, label) in enumerate(parse_ts(path.read_text())):
            row: dict[str, Any] = {
                "case": f"{part}-{index:04d}",
                "season": "winter" if label == "1" else "summer",
            }
            row.update({f"h{h:02d}": v for h, v in enumerate(channels[0])})
            yield row


def _seattle_rows(path: Path) -> Iterator[Row]:
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            yield {**record, "year": record["date"][:4]}


def _digits_rows(path: Path) -> Iterator[Row]:
    text = gzip.decompress(path.read_bytes()).decode()
    for values in csv.reader(io.StringIO(text)):
        if values:
            *pixels, digit = (int(float(v)) for v in values)
            yield {**{f"px{i:02d}": p for i, p in enumerate(pixels)}, "digit": str(digit)}
