"""``python -m edgeops.gateway``: the gateway container's entrypoint (settings from the
environment, as ``edgeops gateway run`` without flags)."""

from __future__ import annotations

import sys

from edgeops.gateway.server import serve
from edgeops.settings import SettingsError, gateway_settings, settings


def main() -> int:
    """Runs the gateway; 2 with a one-line message for a bad setting."""
    try:
        config, operator_config = gateway_settings(), settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    serve(config, operator_config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
