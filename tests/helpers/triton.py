"""The real NVIDIA Triton (the `tritonserver` binary shipped in the nvidia-pytriton wheel).

It runs from `.venv-triton` (Python 3.12; override with EDGE_INFERENCE_TRITON_VENV) on a plain
model repository, exactly as a deployment would; PyTriton's Python wrapper is not used. The wheel
only ships the python backend, so models are python-backend wrappers around onnxruntime.

How it is launched (what PyTriton itself does, minus its wrapper):
- the wheel's `backends/python` is copied to `<workdir>/backends/python` together with the
  Python-version stub `python_backend_stubs/<X.Y>/triton_python_backend_stub` (the wheel keeps
  the stubs apart; Triton looks for the stub next to libtriton_python.so);
- LD_LIBRARY_PATH = libpython's dir (the venv's base interpreter) + `nvidia_pytriton.libs`
  (the copied stub's $ORIGIN rpath no longer points there);
- PATH starts with `<venv>/bin`: the stub embeds libpython, which finds its prefix by looking up
  `python3` on PATH, so it picks up the venv's pyvenv.cfg and site-packages (numpy, onnxruntime).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .broker import free_port

ROOT = Path(__file__).resolve().parents[2]
TRITON_VENV = Path(os.environ.get("EDGE_INFERENCE_TRITON_VENV", ROOT / ".venv-triton"))


@dataclass(frozen=True)
class TritonDist:
    venv: Path
    binary: Path
    python_backend: Path  # the wheel's backends/python (libtriton_python.so + utils)
    stub: Path
    lib_path: list[Path]


def triton_dist(venv: Path = TRITON_VENV) -> TritonDist:
    """Locate the binary, backend, stub and libraries; RuntimeError says what is missing."""
    cfg = venv / "pyvenv.cfg"
    if not cfg.is_file():
        raise RuntimeError(f"no Triton venv at {venv} (scripts/test creates .venv-triton)")
    pairs = (line.partition("=") for line in cfg.read_text().splitlines())
    values = {key.strip(): value.strip() for key, _, value in pairs}
    version = ".".join((values.get("version") or values.get("version_info", "")).split(".")[:2])
    site = venv / "lib" / f"python{version}" / "site-packages"
    dist = site / "pytriton" / "tritonserver"
    binary = dist / "bin" / "tritonserver"
    if not binary.is_file():
        raise RuntimeError(f"nvidia-pytriton is not installed in {venv} ({binary} is missing)")
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeError(f"pytriton has no python backend stub for Python {version}")
    base_lib = Path(values.get("home", "/usr/bin")).parent / "lib"
    lib_path = [p for p in (base_lib, site / "nvidia_pytriton.libs") if p.is_dir()]
    return TritonDist(venv, binary, dist / "backends" / "python", stub, lib_path)


def _env(dist: TritonDist) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [*map(str, dist.lib_path), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
    )
    env["PATH"] = f"{dist.venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env.pop("VIRTUAL_ENV", None)  # pytest's own venv must not leak into the stub
    return env


@functools.cache
def triton_available() -> str | None:
    """None when the binary runs here; otherwise the reason to skip Triton tests."""
    try:
        dist = triton_dist()
    except RuntimeError as err:
        return str(err)
    try:
        probe = subprocess.run(
            [str(dist.binary), "--help"],
            env=_env(dist),
            capture_output=True,
            timeout=30,
            check=False,
        )
    except OSError as err:
        return f"cannot execute {dist.binary}: {err}"
    text = (probe.stdout + probe.stderr).decode(errors="replace")
    if "Usage" not in text:  # --help exits 1 but prints usage once the libraries load
        return f"{dist.binary} does not run on this machine: {text.strip()[-500:]}"
    return None


class TritonServer:
    """One tritonserver process on free ports; `stop()` then `start()` keeps the ports."""

    def __init__(self, workdir: Path, model_repo: Path, *, extra_args: list[str] | None = None):
        self.workdir = workdir
        self.model_repo = model_repo
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.log_path = workdir / "tritonserver.log"
        self.extra_args = extra_args or []
        # Our own shm prefix, so teardown can remove regions a killed stub leaves in /dev/shm.
        self._shm_prefix = f"edge_triton_{uuid.uuid4().hex[:10]}_"
        self._proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _backend_dir(self, dist: TritonDist) -> Path:
        backends = self.workdir / "backends"
        target = backends / "python"
        if not (target / "triton_python_backend_stub").is_file():
            shutil.copytree(
                dist.python_backend,
                target,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            shutil.copy2(dist.stub, target / "triton_python_backend_stub")
        return backends

    def command(self) -> list[str]:
        dist = triton_dist()
        return [
            str(dist.binary),
            f"--model-repository={self.model_repo}",
            f"--backend-directory={self._backend_dir(dist)}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--exit-timeout-secs=5",  # a failed load or a stop must not hang for 30 s
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            *self.extra_args,
        ]

    def start(self, timeout: float = 120.0) -> None:
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = self.command()
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {' '.join(command)}\n".encode())
            log.flush()
            # Own session: stop() signals the whole group, python backend stubs included.
            self._proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(triton_dist()),
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise RuntimeError(f"tritonserver exited with {code}:\n{self.log_tail()}")
            if self._ready():
                self.start_seconds = time.monotonic() - began
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"tritonserver not ready after {timeout}s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        url = f"{self.http_url}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            self._signal_group(proc, signal.SIGCONT)  # a paused server cannot handle SIGTERM
            self._signal_group(proc, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
            self._signal_group(proc, signal.SIGKILL)  # stragglers (stubs) of that group only
        for leftover in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            leftover.unlink(missing_ok=True)

    def pause(self) -> None:
        """SIGSTOP the server (and its stubs): a hung Triton that still holds its ports."""
        if self._proc is not None:
            self._signal_group(self._proc, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._signal_group(self._proc, signal.SIGCONT)

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def log_tail(self, lines: int = 25) -> str:
        """Errors and model load failures of the last run (they sit above the option table),
        then its last lines."""
        try:
            text = self.log_path.read_text(errors="replace").rsplit("\n=== ", 1)[-1]
        except OSError:
            return f"(no log at {self.log_path})"
        all_lines = text.splitlines()
        problems = [ln for ln in all_lines if ln.startswith("E") or "UNAVAILABLE" in ln]
        return "\n".join([*problems[:20], "...", *all_lines[-lines:], f"(log: {self.log_path})"])

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


CONFIG_TEMPLATE = """name: "{name}"
backend: "python"
max_batch_size: 8
dynamic_batching {{ max_queue_delay_microseconds: 2000 }}
input [{{ name: "images" data_type: TYPE_FP32 dims: [ 3, 416, 416 ] }}]
output [{{ name: "output" data_type: TYPE_FP32 dims: [ -1, 85 ] label_filename: "labels.txt" }}]
instance_group [{{ kind: KIND_CPU count: 1 }}]
{parameters}"""

# Runs in Triton's python backend stub (Python of .venv-triton), not in the test process.
MODEL_PY = '''"""ONNX model on onnxruntime (CPU) inside Triton's python backend."""
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]

    def execute(self, requests):
        # Dynamic batching hands over several requests: run them as one batch, then split.
        arrays = [
            [pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs]
            for r in requests
        ]
        try:
            feeds = {n: np.concatenate([a[i] for a in arrays]) for i, n in enumerate(self.inputs)}
            results = self.session.run(self.outputs, feeds)
        except Exception as err:  # reported per request, the model stays loaded
            error = pb_utils.TritonError(f"onnxruntime: {err}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for a in arrays:
            end = start + a[0].shape[0]
            tensors = [
                pb_utils.Tensor(n, np.ascontiguousarray(r[start:end]))
                for n, r in zip(self.outputs, results)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = end
        return responses
'''


def make_triton_detector_repo(
    src_onnx: Path,
    labels: Path,
    dest: Path,
    name: str = "yolov3-tiny",
    parameters: Mapping[str, str] | None = None,
) -> Path:
    """Write `<dest>/<name>/` as a python-backend model wrapping a copy of src_onnx.

    parameters (default: output_layout yolov5, the layout of our darknet converter) travel in
    config.pbtxt, so pipelines see the same ModelConfig through Triton as through local.
    """
    params = {"output_layout": "yolov5"} if parameters is None else parameters
    lines = "".join(
        f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in params.items()
    )
    model_dir = dest / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(CONFIG_TEMPLATE.format(name=name, parameters=lines))
    (model_dir / "1" / "model.py").write_text(MODEL_PY)
    shutil.copy2(src_onnx, model_dir / "1" / "model.onnx")
    shutil.copy2(labels, model_dir / "labels.txt")
    return model_dir


def make_triton_python_model(installed: Path, dest: Path) -> Path:
    """An installed onnxruntime_onnx model dir (config.pbtxt kept: tensors, parameters) as a
    python-backend model under dest: the same config the local backend reads, run by Triton."""
    model_dir = dest / installed.name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    config = (installed / "config.pbtxt").read_text()
    config = config.replace('platform: "onnxruntime_onnx"', 'backend: "python"')
    config += "instance_group [{ kind: KIND_CPU count: 1 }]\n"
    (model_dir / "config.pbtxt").write_text(config)
    (model_dir / "1" / "model.py").write_text(MODEL_PY)
    shutil.copy2(installed / "1" / "model.onnx", model_dir / "1" / "model.onnx")
    shutil.copy2(installed / "labels.txt", model_dir / "labels.txt")
    return model_dir
