"""amqtt, a pure-Python MQTT broker, for machines without Mosquitto (scripts/demo only).

It runs from its own venv (.venv-broker, made on first use) so its pins cannot touch the
server's. Same interface as MosquittoBroker: start(), stop(), host, port.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .broker import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-broker"

CONFIG = """\
listeners:
  default:
    type: tcp
    bind: 127.0.0.1:{port}
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
"""


class EmbeddedBroker:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "amqtt.yaml"
        self.config.write_text(CONFIG.format(port=self.port), encoding="utf-8")

    @staticmethod
    def ensure_installed() -> Path:
        amqtt = VENV / "bin" / "amqtt"
        if not amqtt.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run(
                [str(VENV / "bin" / "pip"), "install", "-q", "amqtt==0.12.1"], check=True
            )
        return amqtt

    def start(self) -> None:
        log = (self.workdir / "amqtt.log").open("wb")
        self._proc = subprocess.Popen(
            [str(self.ensure_installed()), "-c", str(self.config)], stdout=log, stderr=log
        )
        wait_for_port(self.port, timeout=30)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None
