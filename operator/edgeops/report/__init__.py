"""``edgeops report MODEL``: one HTML page with PNG plots that tells a model's story.

What the fleet runs and why: drift per feature over time against its thresholds (from the
operator's ``edgeops_model_drift_*`` series in Prometheus, plus the last measurement in
``status.drift``), the fleet's traffic by version, each FleetRollout's progress per step,
every version with its TrainingRun, trigger, dataset version, gates and signature, which
Device runs which version, and the model's recent Events.

Layers: :mod:`.gather` reads (Kubernetes through :mod:`edgeops.k8s`, Prometheus through
:mod:`edgeops.metrics.prometheus`) into a :class:`.data.ReportData`; :mod:`.charts` and
:mod:`.page` turn that into files without any I/O besides writing them.
"""
