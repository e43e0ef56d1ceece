"""The model card: what a reviewer needs to decide whether a version may reach a fleet."""

from __future__ import annotations

from typing import Any

from edgeops.standardization import METADATA_NAME, Standardization


def model_card(
    run: dict[str, str],
    dataset: dict[str, str],
    family: str,
    metrics: dict[str, Any],
    per_slice: dict[str, dict[str, dict[str, float]]],
    exports: dict[str, dict[str, Any]],
    classes: list[str],
    samples: dict[str, int],
    fairness_detail: str,
    export_errors: dict[str, str] | None = None,
    standardization: Standardization | None = None,
) -> str:
    """The card as Markdown. ``export_errors`` (format → reason) lists exports that failed;
    ``standardization`` is the per-feature ``(x - mean) / scale`` the int8 exports expect
    applied to raw inputs before their int8 quantisation."""
    lines = [
        f"# Model card: {run['namespace']}/{run['name']}",
        "",
        "## Data",
        f"- Dataset: `{dataset['namespace']}/{dataset['name']}` version `{dataset['version']}`",
        f"- Samples: {samples['train']} train, {samples['validation']} validation, "
        f"{samples['test']} test (split by a stable hash of each row's key)",
        f"- Classes: {', '.join(classes)}",
        "",
        "## Intended use",
        f"On-device classification of {', '.join(classes)} from the dataset's features, by a "
        f"small {family} network sized for edge targets. Not for decisions about people "
        "without a human in the loop; not validated outside the data's recorded conditions.",
        "",
        "## Metrics (test split)",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [
        f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in sorted(metrics.items())
    ]
    lines += ["", "## Metrics per slice"]
    if not per_slice:
        lines.append("No slice columns were evaluated.")
    for column, groups in sorted(per_slice.items()):
        lines += ["", f"### {column}", "| value | accuracy | samples |", "|---|---|---|"]
        lines += [
            f"| {value} | {g['accuracy']:.4f} | {int(g['support'])} |"
            for value, g in sorted(groups.items())
        ]
    if fairness_detail:
        lines += ["", f"Largest slice gap: {fairness_detail}."]
    lines += [
        "",
        "## Exports",
        "| format | size (bytes) | latency (ms/sample, this machine) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {fmt} | {e['size']} | {e['latency_ms']:.3f} |" for fmt, e in sorted(exports.items())
    ]
    for fmt, reason in sorted((export_errors or {}).items()):
        lines.append(f"| {fmt} | export failed: {reason} | - |")
    if standardization is not None:
        names = standardization.features or tuple(
            f"feature {i}" for i in range(len(standardization.mean))
        )
        lines += [
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
            f"| {n} | {m:.9g} | {s:.9g} |"
            for n, m, s in zip(names, standardization.mean, standardization.scale, strict=True)
        ]
    lines += [
        "",
        "## Limitations",
        "- Metrics come from one test split of one dataset version; slices with fewer than "
        "5 test samples do not count towards the fairness gap.",
        "- Latencies were measured on the training machine's CPU; device latency differs.",
        "- int8 accuracy is measured with the LiteRT interpreter on the same test split.",
        "",
    ]
    return "\n".join(lines)
