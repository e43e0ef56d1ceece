"""Thin Kopf handlers, one module per kind; `runtime` starts the operator.

Importing a controller module registers its handlers with Kopf.
"""

from edgeops.controllers import dataset, device, edgemodel, fleetrollout, trainingrun

__all__ = ["dataset", "device", "edgemodel", "fleetrollout", "trainingrun"]
