"""``python -m edgeops.device``: the device agent (``edgeops device run``), the image's
entrypoint."""

from edgeops.device.command import main

main()
