"""The collector Job reports its CollectionResult on a log line and the operator reads it
back: every field must survive the trip (a field lost here vanished from Dataset status
once: the objects not read, ``unread``)."""

from __future__ import annotations

import dataclasses
import json

from edgeops.datasets.ingest import CollectionResult
from edgeops.datasets.job import result_document, result_from_document


def test_every_field_survives_the_log_line() -> None:
    result = CollectionResult(
        outcome="Published",
        fingerprint="f" * 64,
        latest={"id": "ab" * 32, "rows": 40},
        history=[{"id": "cd" * 32}, {"id": "ab" * 32}],
        accepted=40,
        rejected=10,
        duplicates=2,
        by_reason={"Malformed": 10},
        coercions={"ax": 1},
        rejected_uri="s3://edgeops/datasets/ns/d/rejected.jsonl",
        sources=3,
        unread=[{"source": "s3://edgeops/inbox/ns/d/twice.csv", "rows": 10,
                 "reason": "Malformed", "detail": "column 'ax' appears 2 times"}],
        repeated=True,
    )  # fmt: skip
    document = json.loads(json.dumps(result_document(result, history_limit=10)))
    assert result_from_document(document) == result
    # A new field of CollectionResult must be carried too (this test names them all).
    assert {f.name for f in dataclasses.fields(CollectionResult)} == {
        "outcome", "fingerprint", "latest", "history", "accepted", "rejected", "duplicates",
        "by_reason", "coercions", "rejected_uri", "sources", "unread", "repeated",
    }  # fmt: skip
