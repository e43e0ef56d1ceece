"""``python -m edgeops.serving``: the predictor container's entrypoint."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import kserve
from kserve import model_server

from edgeops.settings import SettingsError, predictor_settings
from edgeops.signing import Binding

from .limits import RequestLimits
from .predictor import BadInputError, OnnxPredictor, bad_input_handler

log = logging.getLogger("edgeops.serving")


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", default="/mnt/models", help="Downloaded model prefix.")
    args, _ = parser.parse_known_args()
    try:
        config = predictor_settings()
    except SettingsError as exc:  # nothing is served without the keys to verify it with
        sys.exit(f"error: {exc}")
    expected = Binding(
        namespace=config.model_namespace,
        model=config.model_name,
        version=config.model_version,
        model_uid=config.model_uid,
    )
    model = OnnxPredictor(
        args.model_name, Path(args.model_dir), dict(config.signing_public_keys), expected
    )
    model.load()
    assert model.verified is not None
    log.info(
        "serving %s v%s (signature verified)", args.model_name, model.verified.manifest["version"]
    )
    # KServe's ASGI app: request bodies bounded (413), inputs that do not fit the model
    # answered 400 with what it expects, 500s without internal error text.
    app = model_server.app
    app.add_middleware(RequestLimits, max_request_bytes=config.predictor_max_request_bytes)
    app.add_exception_handler(BadInputError, bad_input_handler)
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port).start([model])


if __name__ == "__main__":
    main()
