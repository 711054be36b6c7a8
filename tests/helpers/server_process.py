"""The real edge-inference-server, run as a subprocess from the project's .venv."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .broker import free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPO = ROOT / "model_repository"
FIXTURES = ROOT / "tests" / "fixtures"


def server_python() -> str:
    """The server's interpreter: .venv (tritonclient needs urllib3 2, HA's venv refuses it)."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


class ServerProcess:
    """Start, kill (SIGKILL or SIGTERM) and restart the server on a fixed port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        mqtt_port: int | None,
        token: str = "test-token",
        server_id: str = "test-server",
        model_repo: Path = DEFAULT_REPO,
        port: int | None = None,
        extra_args: list[str] | None = None,
        media_root: Path | None = FIXTURES,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.token = token
        self.server_id = server_id
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            server_python(),
            "-m",
            "inference_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--token",
            token,
            "--server-id",
            server_id,
            "--model-repo",
            str(model_repo),
            "--data-dir",
            str(data_dir),
            "--advertise-url",
            self.url,
            "--log-level",
            "info",
            # the Whisper model loads on first use: most test servers never transcribe
            "--speech-preload",
            "false",
        ]
        if mqtt_port is not None:
            self.args += ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(mqtt_port)]
        if media_root is not None:  # local video files as camera sources (off by default)
            self.args += ["--media-root", str(media_root)]
        self.args += extra_args or []
        self.log_path = data_dir / "server.log"
        self.ssl_context: ssl.SSLContext | None = None  # for a server started with --tls-cert
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("EDGE_INFERENCE_TOKEN", None)
        self._proc = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"server exited with {self._proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(
                    f"{self.url}/api/v1/health", timeout=1, context=self.ssl_context
                ) as resp:
                    if json.load(resp).get("status") in ("ok", "degraded"):
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.1)
        self.stop()  # not left running when the test fails here
        raise TimeoutError(f"server not healthy after {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(sig)
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-5000:]
        except OSError:
            return ""
