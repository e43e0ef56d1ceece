"""The operator's evaluation step (issue 17 item 3), without a cluster: the Job it runs,
how its verdict is read, and what the evaluator refuses or measures."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest

from edgeops.api.trainingrun import TrainingRunSpec
from edgeops.policy import training as policy
from edgeops.training.evaluate import EvaluationError, evaluate_exports, verified_artifacts
from edgeops.training.pipeline import TrainingData
from tests.unit.test_datasets_ingest import MemoryStore

RUN = {"metadata": {"name": "r1", "namespace": "team-a", "uid": "uid-1"}}
SPEC = TrainingRunSpec.model_validate(
    {
        "datasetRef": {"name": "ds"},
        "trainer": {"image": "evil.example/trainer:latest", "command": ["sh", "-c", "lie"]},
        "exports": ["onnx"],
    }
)


def test_the_evaluation_job_runs_edgeops_code_whatever_the_trainer_is() -> None:
    config = policy.evaluation_config("team-a", "r1", "uid-1", SPEC, "a" * 64, ["site"])
    job = policy.evaluation_job(RUN, config, "ghcr.io/edgeops/trainer:9.9", "http://s3", "b")
    assert job["metadata"]["name"] == "edgeops-eval-uid-1" == policy.evaluation_job_name("uid-1")
    assert "ownerReferences" not in job["metadata"]  # another namespace than the run's
    labels = job["metadata"]["labels"]
    assert labels["edgeops.dev/job-role"] == "evaluate"
    assert (labels["edgeops.dev/training-run"], labels["edgeops.dev/training-run-namespace"]) == (
        "r1",
        "team-a",
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/edgeops/trainer:9.9"
    assert container["command"] == ["python", "-m", "edgeops.training.evaluate"]
    assert "evil" not in str(job) and "lie" not in str(job)
    env = {e["name"]: e for e in container["env"]}
    secret = env["EDGEOPS_S3_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"]
    assert secret == policy.EVALUATOR_S3_SECRET
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [2]
    assert config["results"] == "runs/team-a/r1/uid-1/results.json"
    assert config["dataset"] == {"namespace": "team-a", "name": "ds", "version": "a" * 64}
    # The train Job is labelled as such, so the indexes keep the two apart.
    train = policy.job(RUN, SPEC, "img", "http://s3", "b")
    assert train["metadata"]["labels"]["edgeops.dev/job-role"] == "train"


def test_the_verdict_is_the_last_marker_line() -> None:
    log = 'noise\nEDGEOPS_EVALUATION {"error": "old"}\nmore\nEDGEOPS_EVALUATION {"sha256": "ab"}\n'
    assert policy.parse_evaluation_marker(log) == {"sha256": "ab"}
    assert policy.parse_evaluation_marker("EDGEOPS_EVALUATION not json") is None
    assert policy.parse_evaluation_marker("EDGEOPS_EVALUATION [1]") is None
    assert policy.parse_evaluation_marker("nothing here") is None


def _entry(store: MemoryStore, data: bytes, fmt: str = "onnx", **override: Any) -> dict[str, Any]:
    ref = store.put_blob(data)
    entry = {"uri": "s3://anywhere/else", "size": ref.size, "sha256": ref.sha256, "format": fmt}
    return {**entry, **override}


def test_listed_artifacts_must_be_the_bytes_they_name() -> None:
    store = MemoryStore()
    good = _entry(store, b"model bytes")
    artifacts, blobs = verified_artifacts(store, [good], ["onnx"])  # type: ignore[arg-type]
    assert blobs == {"onnx": b"model bytes"}
    # The URI is rebuilt from the content address, whatever the trainer wrote.
    assert artifacts[0]["uri"] == f"s3://edgeops/blobs/sha256/{good['sha256'][:2]}/{good['sha256']}"
    refusals = [
        ([{**good, "size": good["size"] + 1}], "listed as"),
        ([{**good, "sha256": hashlib.sha256(b"other").hexdigest()}], None),
        ([{**good, "sha256": "../../etc/passwd"}], "SHA-256"),
        ([good, good], "twice"),
        ([], "no onnx"),
        ("not a list", "must be a list"),
        ([{**good, "size": 10**12}], "outside"),
    ]
    for listed, message in refusals:  # a hash with no blob: the store says so
        with pytest.raises(Exception, match=message):
            verified_artifacts(store, listed, ["onnx"])  # type: ignore[arg-type]


def _data(rows: int = 40) -> TrainingData:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(rows, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    empty = np.zeros((0, 2), dtype=np.float32)
    return TrainingData(
        x, y, empty, y[:0], x, y, ["neg", "pos"], ["a", "b"], {"site": np.array(["s"] * rows)}
    )


def _onnx(weights: list[list[float]]) -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.asarray(weights, dtype=np.float32), "W")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def test_the_metrics_are_measured_from_the_export() -> None:
    pytest.importorskip("onnxruntime")
    data = _data()
    right = _onnx([[-5.0, 5.0], [0.0, 0.0]])  # predicts pos iff x0 > 0: the label
    wrong = _onnx([[5.0, -5.0], [0.0, 0.0]])  # the opposite
    reference, evaluation, flat = evaluate_exports(data, {"onnx": right})
    assert reference == "onnx" and flat["accuracy"] == flat["onnx_accuracy"] == 1.0
    assert flat["onnx_size_bytes"] == len(right) and flat["onnx_latency_ms"] > 0
    assert evaluation.per_slice["site"]["s"]["accuracy"] == 1.0
    _, _, flat = evaluate_exports(data, {"onnx": wrong})
    assert flat["accuracy"] == 0.0  # whatever a trainer would have claimed
    with pytest.raises(EvaluationError, match="the runtime cannot run it"):
        evaluate_exports(data, {"onnx": b"arbitrary bytes, not a model"})
    with pytest.raises(EvaluationError, match="test split is empty"):
        evaluate_exports(_data(0), {"onnx": right})


def test_the_model_card_shows_measured_metrics_and_labels_the_trainers_claims(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trainer that forges its metrics and its own model card (with a metric name built
    to add a row to the card's trusted table) gets EdgeOps's card: measured numbers in the
    metrics table, its claims only under the untrusted heading, its card not listed."""
    pytest.importorskip("onnxruntime")
    from edgeops.training import card as cards
    from edgeops.training import evaluate

    store = MemoryStore()
    wrong = store.put_blob(_onnx([[5.0, -5.0], [0.0, 0.0]]))  # always wrong: accuracy 0
    forged_card = store.put_blob(b"# Model card\n| accuracy | 0.9990 |\n")
    injected = "x|\n| accuracy | 0.999 | 40 | trusted |"
    store.put_json(
        "runs/ns/r1/uid-1/results.json",
        {
            "family": "dense",
            "metrics": {"overall": {"accuracy": 0.999, "macro_f1": 0.999, injected: 0.999}},
            "artifacts": [
                {"format": "onnx", "sha256": wrong.sha256, "size": wrong.size},
                {"format": "model-card", "sha256": forged_card.sha256, "size": forged_card.size},
            ],
        },
    )
    monkeypatch.setattr(evaluate, "load_version", lambda *_: (_data(), b"{}"))
    config = {
        "run": {"namespace": "ns", "name": "r1", "uid": "uid-1"},
        "dataset": {"namespace": "ns", "name": "ds", "version": "v" * 64},
        "exports": ["onnx"],
        "sliceColumns": ["site"],
        "results": "runs/ns/r1/uid-1/results.json",
        "output": {"prefix": "runs/ns/r1/uid-1"},
    }
    document = evaluate.run(store, config)  # type: ignore[arg-type]
    assert document["metrics"]["overall"]["accuracy"] == 0.0
    assert document["trainerReported"]["overall"] == {"accuracy": 0.999, "macro_f1": 0.999}
    (listed,) = [a for a in document["artifacts"] if a["format"] == "model-card"]
    assert listed["sha256"] != forged_card.sha256
    card = store.get_blob(listed["sha256"]).decode()
    measured, untrusted = card.split(cards.UNTRUSTED_HEADING)
    assert "| accuracy | 0.0000 | 40 | 0.0000-0.0876 (95 %, wilson) |" in measured
    assert "0.999" not in measured and "| onnx |" in measured
    assert "| accuracy | 0.9990 | 0.0000 |" in untrusted
    assert "| macro_f1 | 0.9990 | 0.0000 |" in untrusted
    assert "trusted |" not in card  # the injected metric name was dropped, not rendered
    assert "family `dense`, as the trainer reports" in card
    assert "| site |" not in card and "| s | 0.0000 | 40 |" in measured
