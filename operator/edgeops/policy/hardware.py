"""Hardware profiles: how fast a class of device runs a model's operations, so a latency
budget for an MCU or another CPU is checked against an estimate for *that* hardware, not a
timing on the evaluator's x86 host.

An estimate is ``macs / macs_per_second + elementwise / elementwise_per_second +
operators * operator_overhead_us`` for one inference, from the counts the evaluator reads
from the exported graph (:mod:`edgeops.training.opcount`). The rates are sustained rates of
the usual runtime on that hardware (TFLite Micro with the vendor's int8 kernels on MCUs,
TFLite/ONNX Runtime with NEON on Linux boards), derived from the published figures named in
each profile's ``source`` and rounded down: small layers do not reach a kernel's peak. They
are estimates for a budget (within a factor of about two), not measurements; a device's own
latency telemetry (FleetRollout analysis) is the measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class HardwareProfile:
    """Sustained speed of one class of hardware for one inference.

    ``names``: ``spec.hardware`` values (lower case) it applies to, the first is its name;
    ``macs_per_second``: multiply-accumulates of dense/convolution layers per second
    (int8 on MCUs, float32 on Linux CPUs); ``elementwise_per_second``: other element
    operations per second; ``operator_overhead_us``: fixed cost of running one operator
    (µs); ``source``: where the numbers come from."""

    names: tuple[str, ...]
    target_type: str
    macs_per_second: float
    elementwise_per_second: float
    operator_overhead_us: float
    source: str

    @property
    def name(self) -> str:
        """The profile's name (its first hardware name)."""
        return self.names[0]


PROFILES: Final[tuple[HardwareProfile, ...]] = (
    HardwareProfile(
        names=("esp32-s3", "esp32s3"),
        target_type="mcu",
        # espressif/esp-tflite-micro README, "ESP-NN Integration" table (checked): TFLM
        # Person Detection 54 ms with ESP-NN (2300 ms without) on ESP32-S3 at 240 MHz. Its
        # model (MobileNetV1-0.25, 96x96, about 7.5 M MACs as in the MLPerf Tiny VWW
        # reference) so about 140 M MAC/s; rounded down to 100 M.
        macs_per_second=100e6,
        elementwise_per_second=60e6,
        operator_overhead_us=10.0,
        source="espressif/esp-tflite-micro README (ESP-NN Integration): TFLM Person "
        "Detection 54 ms on ESP32-S3 @240 MHz with ESP-NN (~7.5 M MACs), rounded down",
    ),
    HardwareProfile(
        names=("cortex-m7", "stm32f746", "stm32f7"),
        target_type="mcu",
        # CMSIS-NN (Lai, Suda, Chandra 2018, arXiv:1801.06601): its int8 CIFAR-10 CNN runs
        # at about 10 frames/s on a 216 MHz Cortex-M7, i.e. roughly 0.5 MAC per cycle.
        macs_per_second=100e6,
        elementwise_per_second=50e6,
        operator_overhead_us=5.0,
        source="CMSIS-NN paper (arXiv:1801.06601): ~0.5 MAC/cycle on Cortex-M7 @216 MHz",
    ),
    HardwareProfile(
        names=("cortex-m4", "nrf52840", "arduino-nano-33-ble"),
        target_type="mcu",
        # Cortex-M4 with the DSP extension: SMLAD does 2 int8 MACs per cycle at peak;
        # CMSIS-NN kernels sustain about 0.5 per cycle (as on the M7): 64 MHz nRF52840.
        macs_per_second=30e6,
        elementwise_per_second=15e6,
        operator_overhead_us=15.0,
        source="CMSIS-NN (arXiv:1801.06601) ~0.5 MAC/cycle, at the nRF52840's 64 MHz",
    ),
    HardwareProfile(
        names=("raspberry-pi-4", "rpi4", "pi4"),
        target_type="linux",
        # Published TFLite CPU timings of MobileNetV1-1.0-224 (569 M MACs) on a
        # Raspberry Pi 4 (Cortex-A72 @1.5 GHz): about 90 ms, i.e. ~6 G MAC/s; rounded down
        # to one core's share of that.
        macs_per_second=2e9,
        elementwise_per_second=1e9,
        operator_overhead_us=2.0,
        source="TFLite MobileNetV1-1.0-224 (569 M MACs) ~90 ms on Raspberry Pi 4 "
        "(Cortex-A72 @1.5 GHz), rounded down to one core",
    ),
)


def profile_for(hardware: str | None) -> HardwareProfile | None:
    """The profile whose names include ``hardware`` (case-insensitive), or None."""
    if not hardware:
        return None
    wanted = hardware.strip().lower()
    return next((p for p in PROFILES if wanted in p.names), None)


def known() -> str:
    """Comma-separated profile names, for messages."""
    return ", ".join(p.name for p in PROFILES)


def estimate_ms(
    profile: HardwareProfile, macs: float, elementwise: float, operators: float
) -> float:
    """Estimated milliseconds of one inference on ``profile``'s hardware."""
    seconds = (
        macs / profile.macs_per_second
        + elementwise / profile.elementwise_per_second
        + operators * profile.operator_overhead_us * 1e-6
    )
    return seconds * 1000.0
