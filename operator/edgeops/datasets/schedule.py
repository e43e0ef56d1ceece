"""When a Dataset is due for collection (the decision lives in `edgeops.policy.collection`)."""

from __future__ import annotations

from edgeops.policy.collection import is_due, seconds_until_due

__all__ = ["is_due", "seconds_until_due"]
