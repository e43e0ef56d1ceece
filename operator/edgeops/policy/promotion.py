"""Promotion decisions: which version becomes current, and the FleetRollout that moves the
fleet to it (built from the EdgeModel's rollout template, owned by the EdgeModel)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from edgeops.api.constants import API_VERSION, EDGE_MODEL, FLEET_ROLLOUT, Labels, Reason
from edgeops.api.fleetrollout import FleetRolloutTemplate
from edgeops.policy.desired import RolloutView


@dataclass(frozen=True)
class PromoteRequest:
    version: int
    raw: str


def parse_request(value: str | None) -> PromoteRequest | None:
    """``edgeops.dev/promote`` is "<version>" or "<version> <nonce>" (the CLI adds a nonce so
    that asking twice for the same version - e.g. rolling back to it again - is new)."""
    if not value or not value.strip():
        return None
    head = value.strip().split()[0]
    if not head.isdigit() or int(head) < 1:
        raise ValueError(f"edgeops.dev/promote={value!r}: expected a version number")
    return PromoteRequest(int(head), value.strip())


def owner_reference(model: dict[str, Any]) -> dict[str, Any]:
    meta = model["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": EDGE_MODEL,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def rollout_name(model_name: str, version: int, sequence: int) -> str:
    """Deterministic, and new for every promotion (a rollout's version is immutable, and a
    rollback to an earlier version needs a rollout of its own)."""
    return f"{model_name}-v{version}-{sequence}"


def fleet_rollout(
    model: dict[str, Any],
    template: FleetRolloutTemplate,
    version: int,
    sequence: int,
    why: str,
) -> dict[str, Any]:
    name = model["metadata"]["name"]
    spec = template.model_dump(by_alias=True, exclude_none=True, mode="json")
    spec.update(modelRef={"name": name}, version=version)
    return {
        "apiVersion": API_VERSION,
        "kind": FLEET_ROLLOUT,
        "metadata": {
            "name": rollout_name(name, version, sequence),
            "labels": {
                Labels.MANAGED_BY: Labels.MANAGED_BY_VALUE,
                Labels.MODEL: name,
                Labels.MODEL_VERSION: str(version),
            },
            "annotations": {"edgeops.dev/promoted-because": why[:512]},
            "ownerReferences": [owner_reference(model)],
        },
        "spec": spec,
    }


def manual_instructions(model_name: str, version: int) -> str:
    """What to run to promote ``version``. The kubectl form carries a nonce, like the CLI's
    requests: a value equal to the last handled one is ignored, so a bare version would do
    nothing after, e.g., promoting it, rolling back and promoting it again."""
    return (
        f"version {version} passed its gates and is signed; promote it with "
        f"`edgeops promote {model_name} {version}` or "
        f'`kubectl annotate edgemodel {model_name} edgeops.dev/promote="{version} $(date +%s)" '
        "--overwrite`"
    )


def fleet_rollout_of(model: str, rollouts: list[RolloutView]) -> RolloutView | None:
    """The newest (creationTimestamp, then name) Succeeded FleetRollout of ``model``: the
    version the fleet was last moved to. None when no rollout of the model succeeded."""
    done = [r for r in rollouts if r.model == model and r.phase == "Succeeded"]
    return max(done, key=lambda r: (r.created, r.name), default=None)


@dataclass(frozen=True)
class FleetRecord:
    """EdgeModel ``status.fleetVersion`` / ``status.fleetRollout`` and, when they change,
    the Event that says why (``reason`` None: unchanged)."""

    version: int | None
    rollout: str | None
    reason: str | None = None
    message: str = ""


def fleet_record(
    model: str, rollouts: list[RolloutView], version: int | None, rollout: str | None
) -> FleetRecord:
    """The fleet record from the model's FleetRollouts now (``version``/``rollout``: the
    recorded one): the newest Succeeded rollout; when the recorded rollout was deleted, the
    newest remaining Succeeded one, or nothing (the devices it governed follow an older
    rollout or the model's currentVersion, so its version is no longer what the fleet
    was moved to). Never names a rollout that does not exist."""
    done = fleet_rollout_of(model, rollouts)
    if done is not None and (done.version, done.name) == (version, rollout):
        return FleetRecord(version, rollout)
    gone = rollout is not None and all(r.name != rollout for r in rollouts if r.model == model)
    if done is None:
        if rollout is None and version is None:
            return FleetRecord(None, None)
        return FleetRecord(
            None, None, Reason.FLEET_RECORD_CLEARED,
            f"FleetRollout {rollout} no longer exists and no other rollout of {model} "
            f"succeeded: status.fleetVersion (was v{version}) and fleetRollout cleared; its "
            "devices follow an older rollout or the model's currentVersion",
        )  # fmt: skip
    if gone:
        return FleetRecord(
            done.version, done.name, Reason.FLEET_RECORD_CLEARED,
            f"FleetRollout {rollout} no longer exists: the fleet record is now the newest "
            f"Succeeded rollout {done.name}, v{done.version} (was v{version})",
        )  # fmt: skip
    return FleetRecord(
        done.version, done.name, Reason.FLEET_UPDATED,
        f"FleetRollout {done.name} succeeded: the fleet runs v{done.version}"
        + (f" (was v{version})" if version else ""),
    )  # fmt: skip


#: Phases of a FleetRollout that no longer moves devices.
ENDED: Final = frozenset({"Succeeded", "Aborted", "RolledBack"})


def rollout_moving_to(version: int, rollouts: list[RolloutView]) -> RolloutView | None:
    """The model's newest FleetRollout (``rollouts``: the model's) when it moves devices
    to ``version`` and has not ended (Succeeded, Aborted, RolledBack): Auto promotion then
    creates no second one (e.g. a user's rollout of v1 applied before v1 existed). Only the
    newest counts, because the newest rollout selecting a device governs it: promoting a
    version again after a newer rollout (a rollback) must create a rollout newer than that."""
    newest = max(rollouts, key=lambda r: (r.created, r.name), default=None)
    if newest is None or newest.version != version or newest.phase in ENDED:
        return None
    return newest
