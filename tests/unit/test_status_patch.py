"""The EdgeModel's status merge patch replaces objects: keys a new value lacks are deleted
(a NoDrift measurement must not keep the last drift's ``driftSince``)."""

from __future__ import annotations

from edgeops.controllers.edgemodel import _replacing


def test_keys_missing_from_the_new_value_are_sent_as_null() -> None:
    old = {"verdict": "Drift", "driftSince": "2026-01-01T00:00:00Z", "nested": {"a": 1, "b": 2}}
    new = {"verdict": "NoDrift", "nested": {"a": 1}}
    assert _replacing(old, new) == {
        "verdict": "NoDrift",
        "driftSince": None,
        "nested": {"a": 1, "b": None},
    }
    # Lists and scalars are replaced whole by a merge patch anyway.
    assert _replacing([1, 2], [3]) == [3]
    assert _replacing(None, {"a": 1}) == {"a": 1}
