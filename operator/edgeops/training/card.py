"""The model card: what a reviewer needs to decide whether a version may reach a fleet.

Written by EdgeOps's evaluator (:mod:`edgeops.training.evaluate`), never by the trainer:
every number under "Metrics" is one the evaluator measured on the dataset version's test
split with the exports' own runtimes, the same numbers the gates compare and the
TrainingRun and EdgeModel status show. What the trainer claimed about itself appears only in
a section that says it is not verified and not used, so a reviewer can see a trainer that
lies, but never reads its claims as measurements.

Every value that comes from outside EdgeOps (class and slice values from the tenant's
data, feature names stored in an export, the trainer's metric names) is escaped for a
Markdown table cell, so none can add rows or headings to the card.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from edgeops.standardization import METADATA_NAME, Standardization

#: Metric names the trainer's claims may carry into the card (anything else is dropped).
CLAIM_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,63}")
#: Export formats whose ``<fmt>_*`` metrics the evaluator measures.
MEASURED_FORMATS: Final = ("onnx", "tflite", "tflite-int8", "tflm")
UNTRUSTED_HEADING: Final = "## Trainer-reported metrics (NOT verified, not used by any gate)"


def cell(value: object, limit: int = 200) -> str:
    """``value`` as one Markdown table cell: no line breaks, pipes escaped, at most
    ``limit`` characters (an ellipsis marks a cut)."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")


def _number(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return cell(value)
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _interval(intervals: Mapping[str, Any], metric: str) -> tuple[str, str]:
    known = intervals.get(metric)
    if not isinstance(known, Mapping):
        return "-", "-"
    level = f"{float(known.get('confidence', 0.95)) * 100:.4g} %"
    return (
        str(int(known.get("samples", 0))),
        f"{float(known['low']):.4f}-{float(known['high']):.4f} ({level}, {known.get('method')})",
    )


def _metrics(document: Mapping[str, Any]) -> list[str]:
    overall: Mapping[str, Any] = document["metrics"]["overall"]
    intervals: Mapping[str, Any] = document["metrics"].get("intervals") or {}
    reference = document.get("reference", {})
    reference_format = reference.get("format") if isinstance(reference, Mapping) else reference
    lines = [
        "## Metrics (measured by EdgeOps's evaluator on the test split)",
        f"Measured by the evaluator (EdgeOps {cell(document['evaluator']['version'])}) "
        f"running each export with its own runtime on the dataset version's "
        f"{document['samples']['test']} test rows; overall metrics are those of the "
        f"`{cell(reference_format)}` export. These are the numbers the gates compare.",
        "",
        "| metric | value | samples | interval |",
        "|---|---|---|---|",
    ]
    for name, value in sorted(overall.items()):
        per_export = any(name.startswith(f.replace("-", "_") + "_") for f in MEASURED_FORMATS)
        if per_export and not name.endswith("_accuracy"):
            continue  # sizes, latencies and operation counts: the exports table
        samples, interval = _interval(intervals, name)
        lines.append(f"| {cell(name)} | {_number(value)} | {samples} | {interval} |")
    return lines


def _slices(document: Mapping[str, Any]) -> list[str]:
    detail = document.get("detail") or {}
    per_slice: Mapping[str, Mapping[str, Mapping[str, float]]] = detail.get("per_slice") or {}
    lines = ["", "## Metrics per slice (measured)"]
    if not per_slice:
        lines.append("No slice columns were evaluated.")
    for column, groups in sorted(per_slice.items()):
        lines += ["", f"### {cell(column)}", "| value | accuracy | samples |", "|---|---|---|"]
        lines += [
            f"| {cell(value)} | {g['accuracy']:.4f} | {int(g['support'])} |"
            for value, g in sorted(groups.items())
        ]
    if detail.get("fairness_gap_detail"):
        lines += ["", f"Largest slice gap: {cell(detail['fairness_gap_detail'], 600)}."]
    return lines


def _exports(document: Mapping[str, Any]) -> list[str]:
    overall: Mapping[str, Any] = document["metrics"]["overall"]
    host = document.get("latency") or {}
    lines = [
        "",
        "## Exports",
        "| format | size (bytes) | accuracy | latency (ms/sample) |",
        "|---|---|---|---|",
    ]
    for artifact in sorted(document["artifacts"], key=lambda a: str(a["format"])):
        fmt = str(artifact["format"])
        key = fmt.replace("-", "_")
        if fmt not in MEASURED_FORMATS:
            if fmt == "savedmodel":
                lines.append(f"| savedmodel | {artifact['size']} | not executed | - |")
            continue
        accuracy = overall.get(f"{key}_accuracy")
        latency = overall.get(f"{key}_latency_ms")
        timing = (
            "not measured (runs on a microcontroller)"
            if fmt == "tflm"
            else f"{latency:.4f} on the evaluator's CPU ({cell(host.get('machine', '?'))})"
            if isinstance(latency, int | float)
            else "not measured"
        )
        shown = f"{accuracy:.4f}" if isinstance(accuracy, int | float) else "-"
        lines.append(f"| {fmt} | {artifact['size']} | {shown} | {timing} |")
    for fmt, reason in sorted((document["metrics"].get("exportErrors") or {}).items()):
        lines.append(f"| {cell(fmt)} | export failed: {cell(reason, 600)} | - | - |")
    return lines


def _standardization(standardization: Standardization) -> list[str]:
    names = standardization.features or tuple(
        f"feature {i}" for i in range(len(standardization.mean))
    )
    lines = [
        "",
        "## Input standardisation (int8 exports)",
        "The float exports (onnx, tflite) take raw sensor values. The int8 exports "
        "(tflite-int8, tflm) take the standardised vector `(x - mean) / scale`, computed "
        "before the input is quantised with the model's int8 input scale; the numbers "
        f"are stored in the .tflite metadata entry `{METADATA_NAME}` and in the "
        "TFLite-Micro bundle's model_data.h.",
        "",
        "| feature | mean | scale |",
        "|---|---|---|",
    ]
    lines += [
        f"| {cell(n)} | {m:.9g} | {s:.9g} |"
        for n, m, s in zip(names, standardization.mean, standardization.scale, strict=True)
    ]
    return lines


def trainer_claims(reported: Mapping[str, Any]) -> dict[str, float]:
    """The trainer's own metrics that may be shown (labelled untrusted): numeric values of
    names matching :data:`CLAIM_NAME`, at most 32."""
    return {
        k: float(v)
        for k, v in list(reported.items())[:32]
        if isinstance(k, str)
        and CLAIM_NAME.fullmatch(k)
        and isinstance(v, int | float)
        and not isinstance(v, bool)
    }


def _claims(document: Mapping[str, Any]) -> list[str]:
    claimed = trainer_claims((document.get("trainerReported") or {}).get("overall") or {})
    lines = ["", UNTRUSTED_HEADING]
    if not claimed:
        return [*lines, "The trainer reported no metrics."]
    measured: Mapping[str, Any] = document["metrics"]["overall"]
    lines += [
        "What the trainer's own code wrote about its model. EdgeOps did not measure these "
        "and never gates or signs on them; a large difference to the measured value is a "
        "reason to distrust the trainer.",
        "",
        "| metric | trainer says | measured |",
        "|---|---|---|",
    ]
    for name, value in sorted(claimed.items()):
        own = measured.get(name)
        lines.append(f"| {name} | {_number(value)} | {_number(own) if own is not None else '-'} |")
    return lines


def model_card(
    document: Mapping[str, Any],
    dataset: Mapping[str, str],
    split: Mapping[str, int],
    *,
    family: str | None = None,
    standardization: Standardization | None = None,
) -> str:
    """The card as Markdown, from the evaluator's document (the ``edgeops.dev/evaluation/v1``
    shape :func:`edgeops.training.evaluate.run` builds: ``run``, ``evaluator``,
    ``reference``, ``samples``, ``classes``, ``metrics`` {overall, intervals, exportErrors},
    ``latency``, ``detail``, ``artifacts``, ``trainerReported``).

    ``dataset``: namespace, name, version; ``split``: rows per split of that version
    (train, validation, test); ``family``: the model family the trainer reports (shown as
    its claim); ``standardization``: what the int8 export itself carries."""
    run = document["run"]
    classes = [cell(c, 64) for c in document["classes"]]
    lines = [
        f"# Model card: {cell(run['namespace'])}/{cell(run['name'])}",
        "",
        "## Data",
        f"- Dataset: `{cell(dataset['namespace'])}/{cell(dataset['name'])}` version "
        f"`{cell(dataset['version'])}`",
        f"- Rows of that version: {split.get('train', 0)} train, "
        f"{split.get('validation', 0)} validation, {split.get('test', 0)} test (split by a "
        "stable hash of each row's key)",
        f"- Classes: {', '.join(classes)}",
        "",
        "## Intended use",
        f"On-device classification of {', '.join(classes)} from the dataset's features, by a "
        f"small network sized for edge targets"
        + (f" (family `{cell(family, 32)}`, as the trainer reports)" if family else "")
        + ". Not for decisions about people without a human in the loop; not validated "
        "outside the data's recorded conditions.",
        "",
    ]
    lines += _metrics(document)
    lines += _slices(document)
    lines += _exports(document)
    if standardization is not None:
        lines += _standardization(standardization)
    lines += _claims(document)
    lines += [
        "",
        "## Limitations",
        "- Metrics come from one test split of one dataset version; slices with fewer than "
        "5 test samples do not count towards the fairness gap.",
        "- Latencies were measured on the evaluator's CPU, not on a device; a gate on a "
        "target with a hardware profile uses that profile's estimate instead.",
        "- int8 accuracy is measured with the LiteRT interpreter on the same test split.",
        "",
    ]
    return "\n".join(lines)
