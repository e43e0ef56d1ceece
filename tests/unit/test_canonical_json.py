"""edgeops.canonical_json: the one home of the hashed encodings. NaN is refused, and the
hashes EdgeOps has persisted keep their values for the same content."""

from __future__ import annotations

import hashlib
import math

import pytest

from edgeops.api.edgemodel import TrainingTemplate
from edgeops.api.trainingrun import TrainingRunSpec
from edgeops.canonical_json import jcs, sorted_json
from edgeops.datasets.cleaning import row_digest
from edgeops.datasets.manifest import ManifestEntry, version_id
from edgeops.datasets.split import row_key
from edgeops.policy import retrain, training

# Floats whose json.dumps and RFC 8785 forms differ, and non-ASCII text.
ROW = {"ax": 1e-05, "ay": 1.0, "site": "Zürich", "label": "walk", "big": 1e21}
CONFIG = {"note": "Zürich", "scale": 1e-05, "dropout": 0.0}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(value: float) -> None:
    for document in (value, {"x": value}, [1, [value]], {"a": {"b": (value,)}}):
        for encode in (
            sorted_json,
            lambda d: sorted_json(d, ensure_ascii=True),
            jcs,
        ):
            with pytest.raises(ValueError):
                encode(document)


def test_sorted_json_is_json_dumps_sorted_and_compact() -> None:
    document = {"b": [1.0, 1e-05, "é"], "a": None, "\ue000": 1, "\U0001f600": 2}
    assert sorted_json(document) == '{"a":null,"b":[1.0,1e-05,"é"],"\ue000":1,"😀":2}'.encode()
    assert sorted_json(document, ensure_ascii=True) == (
        b'{"a":null,"b":[1.0,1e-05,"\\u00e9"],"\\ue000":1,"\\ud83d\\ude00":2}'
    )
    # RFC 8785 writes numbers and orders keys differently: not interchangeable.
    assert jcs(document) == '{"a":null,"b":[1,0.00001,"é"],"😀":2,"\ue000":1}'.encode()


# Computed with the encodings these modules had before they shared edgeops.canonical_json
# (commit 532453a): dataset version ids in S3, split buckets, code hashes in status.
def test_persisted_hashes_keep_their_values() -> None:
    entries = [
        ManifestEntry("datasets/ns/d/shards/train.jsonl", 1024, "ab" * 32),
        ManifestEntry("datasets/ns/d/shards/schema.json", 77, "cd" * 32),
    ]
    assert version_id(entries) == (
        "e31404b4103d35f1f92b15cb60b842b2de5de04fa5f677692def5bc1b89d559b"
    )
    assert row_key(ROW, None) == (
        '{"ax":1e-05,"ay":1.0,"big":1e+21,"label":"walk","site":"Zürich"}'.encode()
    )
    assert row_key(ROW, ["site", "ax"]) == '["Zürich",1e-05]'.encode()
    assert row_digest(ROW).hex() == (
        "266f22f3e7fe0c69193408696d00793ddd9f8eb83dad11e8857d0c8e95905684"
    )
    template = TrainingTemplate.model_validate(
        {
            "datasetRef": {"name": "d"},
            "exports": ["onnx", "tflm"],
            "trainer": {"image": "trainer:2", "config": CONFIG},
        }
    )
    assert retrain.code_hash(template) == (
        "0226a16892cd50aaba45e74b46811e5e749c885e683e64d295a44c2ca602e82f"
    )
    spec = TrainingRunSpec.model_validate(
        {
            "datasetRef": {"name": "ds"},
            "trainer": {"hyperparameters": {"epochs": 5}, "config": CONFIG},
            "exports": ["onnx", "tflm"],
        }
    )
    assert training.config_hash(spec) == (
        "def928281822a4e98fd7b361a7927b4ae513ca8dc3a80b08983184cf10e54fe1"
    )
    # RFC 8785 would have changed them: why these keep the sorted json.dumps bytes.
    assert hashlib.sha256(jcs(ROW)).digest() != row_digest(ROW)
