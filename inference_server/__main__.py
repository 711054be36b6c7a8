"""`edge-inference-server`: read the settings, run the server; nothing else."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from .app import create_app
from .config import ConfigError, load_settings
from .server import Server


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(argv)
    except ConfigError as err:
        print(f"edge-inference-server: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        server = Server(settings)
    except OSError as err:
        print(f"edge-inference-server: {err}", file=sys.stderr)
        return 2
    web.run_app(
        create_app(server),
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=lambda msg: logging.getLogger(__name__).info(msg),
        shutdown_timeout=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
