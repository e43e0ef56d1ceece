"""Thin Kopf handlers, one module per kind; `runtime` starts the operator.

Importing a controller module registers its handlers with Kopf.
"""

from edgeops.controllers import (
    admission,
    dataset,
    dataset_deletion,
    device,
    edgemodel,
    fleetrollout,
    trainingrun,
)

__all__ = [
    "admission",
    "dataset",
    "dataset_deletion",
    "device",
    "edgemodel",
    "fleetrollout",
    "trainingrun",
]
