"""``python -m edgeops.serving``: the predictor container's entrypoint."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import kserve
from kserve import model_server

from .predictor import OnnxPredictor
from .verify import public_keys_from_env

log = logging.getLogger("edgeops.serving")


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", default="/mnt/models", help="Downloaded model prefix.")
    args, _ = parser.parse_known_args()
    model = OnnxPredictor(args.model_name, Path(args.model_dir), public_keys_from_env())
    model.load()
    assert model.verified is not None
    log.info(
        "serving %s v%s (signature verified)", args.model_name, model.verified.manifest["version"]
    )
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port).start([model])


if __name__ == "__main__":
    main()
