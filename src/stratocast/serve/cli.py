"""``stratocast serve``: uvicorn over a run's published products (127.0.0.1 by default)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from stratocast.serve.config import ENV, ServeConfig, to_env


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8080)
    sp.add_argument("--workers", type=int, default=1)
    sp.add_argument("--token-file", default=None, help="bearer token file (else $STRATOCAST_TOKEN)")
    sp.add_argument("--protect-reads", action="store_true", help="reads need the token too")
    sp.add_argument("--max-cells", type=int, default=200_000)


def serve(products: Path, config_file: Path, args: argparse.Namespace) -> int:
    import uvicorn

    cfg = ServeConfig(
        token_file=args.token_file,
        protect_reads=args.protect_reads,
        max_cells=args.max_cells,
        run_config=str(Path(config_file).resolve()),
    )
    # worker processes import the factory and rebuild the config from the environment
    os.environ[ENV] = to_env(products, cfg)
    uvicorn.run(
        "stratocast.serve.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=max(1, args.workers),
        log_level="warning",
    )
    return 0
