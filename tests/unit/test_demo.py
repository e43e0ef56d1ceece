"""`edgeops dev demo`'s pure parts: its pace patch keeps the example a valid EdgeModel, and
what it prints of objects and drift measurements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgeops.api.edgemodel import EdgeModelSpec
from edgeops.devcluster.demo import DEMO_PACE, FILES, HARDWARE, MODEL, _drift_line, describe

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sensor-fleet"


def _merge(base: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as `kubectl patch --type=merge` applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def test_the_paced_example_is_a_valid_model_the_simulated_fleet_matches() -> None:
    model = yaml.safe_load((EXAMPLE / FILES[1]).read_text())
    assert model["metadata"]["name"] == MODEL
    spec = EdgeModelSpec.model_validate(_merge(model["spec"], DEMO_PACE["spec"]))
    assert spec.retrain.on_drift.enabled and spec.retrain.on_drift.window == "30s"
    assert spec.sampling is not None and spec.sampling.dataset_ref.name == "basic-motions"
    assert (
        spec.sampling.random_share > 0 and spec.sampling.confidence_below == 0
    )  # null would delete the key in a merge patch: its default 0.6 would come back
    # The patch shortens the pace only: the retrain triggers stay the example's.
    assert not spec.retrain.on_new_dataset_version
    assert {(t.target_type, t.hardware) for t in spec.targets} == set(HARDWARE.items())
    template = spec.promotion.rollout_template
    assert template is not None and [s.percent for s in template.steps] == [10, 50, 100]
    # The sampled Dataset takes what the devices upload: the recordings' schema.
    datasets = list(yaml.safe_load_all((EXAMPLE / FILES[0]).read_text()))
    field = next(d for d in datasets if d["metadata"]["name"] == "basic-motions")
    assert {"inbox": {}} in field["spec"]["sources"]
    assert len(field["spec"]["schema"]["features"]) == 24


def test_lines_carry_phase_ready_and_the_drift_numbers() -> None:
    rollout = {
        "kind": "FleetRollout",
        "metadata": {"name": "motion-classifier-v2-2"},
        "status": {
            "phase": "Progressing",
            "percent": 50,
            "conditions": [{"type": "Ready", "status": "True", "message": "step 2 of 3"}],
        },
    }
    assert "Progressing 50% Ready=True" in describe(rollout)
    drift = {
        "version": 1, "window": "30s", "verdict": "Drift", "worstFeature": "acc_y_max",
        "features": [{"feature": "acc_y_max", "method": "psi", "statistic": 1.5,
                      "threshold": 0.91, "pValue": 0.0001, "samples": 2100}],
    }  # fmt: skip
    line = _drift_line(drift)
    assert line == (
        "v1 over 30s: Drift, worst feature acc_y_max: psi 1.500 vs calibrated threshold "
        "0.910, p 0.0001, 2100 samples"
    )
