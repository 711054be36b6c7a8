"""`edge-inference-server`: read the settings, run the server; nothing else."""

from __future__ import annotations

import logging
import ssl
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
    try:
        ssl_context = _ssl_context(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as err:
        print(f"edge-inference-server: --tls-cert/--tls-key: {err}", file=sys.stderr)
        return 2
    web.run_app(
        create_app(server),
        host=settings.host,
        port=settings.port,
        ssl_context=ssl_context,
        access_log=None,
        print=lambda msg: logging.getLogger(__name__).info(msg),
        shutdown_timeout=5,
        # A client that hangs up is not worth an inference: its handler is cancelled.
        handler_cancellation=True,
    )
    return 0


def _ssl_context(cert: str, key: str) -> ssl.SSLContext | None:
    """HTTPS when a certificate is given: the bearer token must not cross the LAN in clear."""
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


if __name__ == "__main__":
    sys.exit(main())
