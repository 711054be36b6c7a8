"""deploy/jetson/prepare-engines.sh: TensorRT FP16 engines built once from the repository's
ONNX models, with Triton configs for the tensorrt_plan platform, and cached.

No GPU and no TensorRT here, so `trtexec` is a STAND-IN that records its arguments and writes
a placeholder engine; what is checked is everything around it: the flags and shapes, the
generated config.pbtxt (parsed with the server's own parser, as it and Triton read it), the
labels, the cache key, and that a changed ONNX model rebuilds only its engine."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from inference_server.models.install_default import install_default_models
from inference_server.models.repository import parse_config
from tests.helpers.server_process import DEFAULT_REPO

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "jetson" / "prepare-engines.sh"
MODELS = ("yolox-nano", "yolov3-tiny")

_TRTEXEC = """#!/usr/bin/env python3
import json, sys
args = sys.argv[1:]
with open(sys.argv[0] + ".calls", "a") as log:
    log.write(json.dumps(args) + "\\n")
engine = next(a.split("=", 1)[1] for a in args if a.startswith("--saveEngine="))
open(engine, "w").write("stand-in engine")
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    install_default_models(DEFAULT_REPO)  # idempotent; scripts/setup made them
    repo = tmp_path / "model_repository"
    for model in MODELS:
        shutil.copytree(DEFAULT_REPO / model, repo / model)
    return repo


def _run(repo: Path, tmp_path: Path) -> list[list[str]]:
    trtexec = tmp_path / "trtexec"
    trtexec.write_text(_TRTEXEC, encoding="utf-8")
    trtexec.chmod(0o755)
    calls = tmp_path / "trtexec.calls"
    calls.unlink(missing_ok=True)
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "MODEL_REPO": str(repo), "TRTEXEC": str(trtexec),
             "TRT_MODELS": " ".join(MODELS)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text(encoding="utf-8").splitlines()]


def test_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(
        ["shellcheck", "--severity=style", str(SCRIPT)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout


def test_builds_fp16_engines_with_their_configs(repo: Path, tmp_path: Path) -> None:
    calls = {Path(c[0].split("=", 1)[1]).parent.parent.name: c[1:] for c in _run(repo, tmp_path)}
    assert set(calls) == set(MODELS)
    for model in MODELS:
        onnx = parse_config((repo / model / "config.pbtxt").read_text("utf-8"))
        flags = calls[model]
        assert flags[0] == f"--saveEngine={repo}/{model}-trt/1/model.plan.tmp"
        assert "--fp16" in flags
        shape = "x".join(str(d) for d in onnx.inputs[0].dims)
        if onnx.max_batch_size > 1:  # one optimisation profile for batches 1..max
            name = onnx.inputs[0].name
            assert f"--minShapes={name}:1x{shape}" in flags
            assert f"--maxShapes={name}:{onnx.max_batch_size}x{shape}" in flags
        else:  # a fixed-batch export: no shapes to give
            assert not [f for f in flags if "Shapes" in f]

        target = repo / f"{model}-trt"
        assert (target / "1" / "model.plan").read_text("utf-8") == "stand-in engine"
        assert not (target / "1" / "model.plan.tmp").exists()
        trt = parse_config((target / "config.pbtxt").read_text("utf-8"), model_dir=target)
        assert trt.name == f"{model}-trt"
        assert trt.platform == "tensorrt_plan"
        # Same tensors and decoding: the server post-processes both alike.
        assert trt.inputs == onnx.inputs
        assert [(t.name, t.dims) for t in trt.outputs] == [(t.name, t.dims) for t in onnx.outputs]
        assert trt.parameters == onnx.parameters
        assert trt.max_batch_size == onnx.max_batch_size
        assert len(trt.labels) == 80
        assert "KIND_GPU" in (target / "config.pbtxt").read_text("utf-8")


def test_engines_are_cached_and_rebuilt_when_the_model_changes(repo: Path, tmp_path: Path) -> None:
    assert len(_run(repo, tmp_path)) == 2
    assert _run(repo, tmp_path) == []  # second start: nothing to build
    with (repo / "yolox-nano" / "1" / "model.onnx").open("ab") as onnx:
        onnx.write(b"\0")  # a new export of the model
    rebuilt = _run(repo, tmp_path)
    assert len(rebuilt) == 1
    assert "/yolox-nano/1/model.onnx" in rebuilt[0][0]
