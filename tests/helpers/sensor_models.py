"""A sensor scoring model for tests, built with onnx's own helpers (nothing downloaded).

`night_watch` scores 1 for any reading between 02:00 and 03:00 UTC and 0 otherwise (from the
`hour_of_day` feature): a rule the built-in rarity would never make. The HA tests run in HA's
venv, which has no onnx: they call `python -m tests.helpers.sensor_models REPO` with the
server's interpreter (server_python()).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .server_process import ROOT, server_python

NIGHT_WATCH = "night_watch"


def night_watch_onnx() -> bytes:
    # Imported here: only the server's interpreter has onnx (and the server's packages).
    import onnx
    from onnx import TensorProto, helper

    from inference_server.pipelines.sensors.scoring import FEATURES

    hour = FEATURES.index("hour_of_day")
    nodes = [
        helper.make_node("Gather", ["features", "column"], ["hour"], axis=1),
        helper.make_node("GreaterOrEqual", ["hour", "two"], ["after_two"]),
        helper.make_node("Less", ["hour", "three"], ["before_three"]),
        helper.make_node("And", ["after_two", "before_three"], ["night"]),
        helper.make_node("Cast", ["night"], ["score"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        NIGHT_WATCH,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", len(FEATURES)])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["n", 1])],
        initializer=[
            helper.make_tensor("column", TensorProto.INT64, [1], [hour]),
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("three", TensorProto.FLOAT, [], [3.0]),
        ],
    )
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(built)
    serialized: bytes = built.SerializeToString()
    return serialized


def add_night_watch(repo: Path) -> None:
    """Write the model into a model repository (in this interpreter: it needs onnx)."""
    (repo / NIGHT_WATCH / "1").mkdir(parents=True, exist_ok=True)
    from inference_server.pipelines.sensors.scoring import FEATURES

    (repo / NIGHT_WATCH / "config.pbtxt").write_text(
        f'name: "{NIGHT_WATCH}"\n'
        'platform: "onnxruntime_onnx"\n'
        "max_batch_size: 4096\n"
        f'input [ {{ name: "features" data_type: TYPE_FP32 dims: [ {len(FEATURES)} ] }} ]\n'
        'output [ { name: "score" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'parameters { key: "task" value: { string_value: "sensor_anomaly" } }\n'
    )
    (repo / NIGHT_WATCH / "1" / "model.onnx").write_bytes(night_watch_onnx())


def repository_with_night_watch(repo: Path, defaults: Path) -> Path:
    """A repository as users have it (the default detectors, linked) plus night_watch,
    written by the server's interpreter so any test venv can call this."""
    repo.mkdir(parents=True, exist_ok=True)
    for default in defaults.iterdir():
        (repo / default.name).symlink_to(default)
    subprocess.run(
        [server_python(), "-m", "tests.helpers.sensor_models", str(repo)], check=True, cwd=ROOT
    )
    return repo


if __name__ == "__main__":
    add_night_watch(Path(sys.argv[1]))
