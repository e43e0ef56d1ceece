"""The fleet gateway: the devices' front door (enrollment, desired state, reports), an
ASGI app served by ``edgeops gateway run``. See :mod:`edgeops.gateway.app`."""
