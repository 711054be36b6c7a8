"""A real Mosquitto on a free loopback port, with its own config and data dir.

Tests stop and restart it (same port) to check reconnects and last wills.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("mosquitto is not installed (scripts/test installs it with apt-get)")


def make_certificates(workdir: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl); returns the CA file."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=workdir)

    subject = ["-nodes", "-newkey", "rsa:2048"]
    openssl(
        "req",
        "-x509",
        *subject,
        "-days",
        "2",
        "-subj",
        "/CN=edge-inference test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    openssl(
        "req", *subject, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"
    )
    (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    )
    return workdir / "ca.pem"


class MosquittoBroker:
    """One broker process; `stop()` then `start()` keeps the port."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        users: dict[str, str] | None = None,
        tls: bool = False,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        auth = "allow_anonymous true\n"
        if users:
            passwords = workdir / "passwords"
            passwords.touch()
            for user, password in users.items():
                tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
                subprocess.run([tool, "-b", str(passwords), user, password], check=True)
            # Started as root, mosquitto drops to its own user, which cannot read pytest's
            # 0700 temp dirs: stay root for the test broker.
            auth = f"allow_anonymous false\npassword_file {passwords}\nuser root\n"
        self.ca_file: Path | None = None
        if tls:
            self.ca_file = make_certificates(workdir)
            auth += (
                f"cafile {self.ca_file}\ncertfile {workdir / 'server.pem'}\n"
                f"keyfile {workdir / 'server.key'}\nuser root\n"
            )
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n" + auth + "persistence false\n"
            f"log_dest file {workdir / 'mosquitto.log'}\n"
            "log_type all\n",
            encoding="utf-8",
        )

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None
