"""Module seams: what the running server loads, and what it must not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from inference_server.models.repository import parse_config

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys, tempfile, pathlib
from inference_server.app import create_app
from inference_server.config import Settings
from inference_server.server import Server
data = pathlib.Path(tempfile.mkdtemp())
create_app(Server(Settings(token="test-token", data_dir=data, model_repo=data)))
print(" ".join(sorted(sys.modules)))
"""


def test_the_local_server_loads_no_tritonclient_and_no_offline_tool() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    assert not [m for m in loaded if m.startswith("tritonclient")]
    assert "inference_server.backends.triton" not in loaded
    # the Darknet converter and the installer are tools, run by hand or by scripts/setup
    assert "inference_server.models.darknet" not in loaded
    assert "inference_server.models.install_default" not in loaded


def test_the_schema_without_tritonclient_reads_config_pbtxt_as_triton_does() -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = (ROOT / "model_repository" / "yolov3-tiny" / "config.pbtxt").read_text()
    ours = parse_config(text)
    theirs = model_config_pb2.ModelConfig()
    text_format.Parse(text, theirs)
    assert ours.max_batch_size == theirs.max_batch_size
    assert [i.name for i in ours.inputs] == [i.name for i in theirs.input]
    assert [tuple(i.dims) for i in ours.inputs] == [tuple(i.dims) for i in theirs.input]
    assert ours.dynamic_batching == theirs.HasField("dynamic_batching")
    assert ours.inputs[0].dtype == "float32"
