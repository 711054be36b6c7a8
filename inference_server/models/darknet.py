"""Convert a Darknet YOLO model (cfg + weights) to ONNX with `onnx.helper` only (no torch).

Supported layers: [convolutional] (with or without batch_normalize; activations leaky, linear,
relu, logistic, mish, swish), [maxpool] (darknet's asymmetric padding), [route] (layers,
groups/group_id as in YOLOv4-tiny), [upsample], [shortcut] (plain add) and [yolo].

Graph contract, relied on by the vision pipeline:
- input `images`: float32 [batch, 3, H, W], RGB, 0..1, already letterboxed by the caller.
- output `output`: float32 [batch, num_boxes, 5 + classes] in the YOLOv5 layout: cx, cy, w, h in
  input pixels, objectness, then per-class probabilities (sigmoid, NOT multiplied by objectness).
  [yolo] layers are concatenated in cfg order; inside a layer rows run (grid_y, grid_x, anchor),
  anchor fastest, which is also the row order of OpenCV DNN's darknet importer.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

_LOGGER = logging.getLogger(__name__)

OPSET = 17
IR_VERSION = 8  # oldest IR that carries opset 17: keeps the file loadable by older runtimes
INPUT_NAME = "images"
OUTPUT_NAME = "output"
_BN_EPS = 1e-5  # darknet: (x - mean) / sqrt(var + .00001)

Array = npt.NDArray[np.float32]
Section = tuple[str, dict[str, str]]


class DarknetError(ValueError):
    """A cfg or weights file this converter cannot turn into ONNX."""


class WeightsTooShortError(DarknetError):
    """The weights file ends before every layer of the cfg got its weights."""


@dataclass(frozen=True)
class ConvertedModel:
    """What the converter wrote and the shape of its output."""

    onnx_path: Path
    input_width: int
    input_height: int
    num_classes: int
    num_boxes: int

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the `images` input."""
        return self.input_width, self.input_height


def parse_cfg(text: str) -> list[Section]:
    """Sections of a darknet cfg as (type, options); darknet ignores all whitespace in lines."""
    sections: list[Section] = []
    for raw in text.splitlines():
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            sections.append((line.strip("[]").lower(), {}))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][1][key] = value
        else:
            raise DarknetError(f"cfg line not understood: {raw!r}")
    if not sections or sections[0][0] not in ("net", "network"):
        raise DarknetError("cfg does not start with a [net] section")
    return sections


class _Weights:
    """Sequential float32 reader over a darknet .weights file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._data = path.read_bytes()
        if len(self._data) < 16:
            raise WeightsTooShortError(f"weights file {path} is too short: no header")
        major, minor, _revision = np.frombuffer(self._data, np.int32, 3)
        # `seen` is a size_t since format 0.2, an int before.
        wide = (int(major) * 10 + int(minor)) >= 2 and major < 1000 and minor < 1000
        self._offset = 12 + (8 if wide else 4)

    def take(self, count: int, what: str) -> Array:
        end = self._offset + 4 * count
        if end > len(self._data):
            raise WeightsTooShortError(
                f"weights file {self._path} is too short: {what} needs bytes up to {end}, "
                f"the file has {len(self._data)}; do cfg and weights belong together?"
            )
        values = np.frombuffer(self._data, np.float32, count, self._offset).copy()
        self._offset = end
        return values

    def finish(self) -> None:
        left = len(self._data) - self._offset
        if left:
            _LOGGER.warning("%s: %d bytes left after the last layer", self._path, left)


class _Graph:
    """Collects nodes and initializers; names every tensor after the layer it belongs to."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._count = 0

    def const(self, name: str, value: npt.ArrayLike, dtype: type = np.float32) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], prefix: str, **attrs: Any) -> str:
        self._count += 1
        out = f"{prefix}_{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def slice(self, x: str, start: int, end: int, axis: int, prefix: str) -> str:
        bounds = [
            self.const(f"{prefix}_{n}{self._count}", [v], np.int64)
            for n, v in (("start", start), ("end", end), ("axis", axis))
        ]
        return self.op("Slice", [x, *bounds], prefix)


@dataclass
class _Tensor:
    name: str
    c: int
    h: int
    w: int


_SIMPLE_ACTIVATIONS: dict[str, tuple[str, dict[str, float]]] = {
    "leaky": ("LeakyRelu", {"alpha": 0.1}),
    "relu": ("Relu", {}),
    "logistic": ("Sigmoid", {}),
}


def _activation(g: _Graph, x: str, kind: str, prefix: str) -> str:
    if kind == "linear":
        return x
    if kind in _SIMPLE_ACTIVATIONS:
        op_type, attrs = _SIMPLE_ACTIVATIONS[kind]
        return g.op(op_type, [x], prefix, **attrs)
    if kind == "mish":  # Mish is opset 18; x * tanh(softplus(x)) works everywhere
        return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x], prefix)], prefix)], prefix)
    if kind == "swish":
        return g.op("Mul", [x, g.op("Sigmoid", [x], prefix)], prefix)
    raise DarknetError(f"activation {kind!r} is not supported")


def _conv(g: _Graph, x: _Tensor, o: dict[str, str], wts: _Weights, i: int) -> _Tensor:
    filters, size = int(o["filters"]), int(o.get("size", 1))
    stride, groups = int(o.get("stride", 1)), int(o.get("groups", 1))
    padding = size // 2 if int(o.get("pad", 0)) else int(o.get("padding", 0))
    if int(o.get("dilation", 1)) != 1 or "stride_x" in o or "stride_y" in o:
        raise DarknetError(f"layer {i}: dilation and stride_x/stride_y are not supported")
    # Darknet stores biases, then (with BN) scales, rolling mean, rolling variance, then weights.
    bias = wts.take(filters, f"layer {i} biases")
    names = ("scales", "mean", "variance") if int(o.get("batch_normalize", 0)) else ()
    bn = [wts.take(filters, f"layer {i} {name}") for name in names]
    shape = (filters, x.c // groups, size, size)
    weights = wts.take(int(np.prod(shape)), f"layer {i} weights").reshape(shape)
    if bn:
        scales, mean, var = bn
        # Fold BN into the conv: one op less per layer, same result.
        factor: Array = (scales / np.sqrt(var + np.float32(_BN_EPS))).astype(np.float32)
        weights = (weights * factor[:, None, None, None]).astype(np.float32)
        bias = (bias - mean * factor).astype(np.float32)
    p = f"l{i}"
    y = g.op(
        "Conv",
        [x.name, g.const(f"{p}_w", weights), g.const(f"{p}_b", bias)],
        p,
        kernel_shape=[size, size],
        strides=[stride, stride],
        pads=[padding] * 4,
        group=groups,
    )
    y = _activation(g, y, o.get("activation", "logistic"), p)  # darknet's default is logistic
    out = (x.h + 2 * padding - size) // stride + 1, (x.w + 2 * padding - size) // stride + 1
    return _Tensor(y, filters, *out)


def _maxpool(g: _Graph, x: _Tensor, o: dict[str, str], i: int) -> _Tensor:
    stride = int(o.get("stride", 1))
    size = int(o.get("size", stride))
    padding = int(o.get("padding", size - 1))
    # Darknet pads padding//2 before and the rest after (so size=2 stride=1 keeps the map size),
    # ignoring padded cells: ONNX MaxPool with the same pads gives the same windows and size.
    before, after = padding // 2, padding - padding // 2
    out_h, out_w = (x.h + padding - size) // stride + 1, (x.w + padding - size) // stride + 1
    y = g.op(
        "MaxPool",
        [x.name],
        f"l{i}",
        kernel_shape=[size, size],
        strides=[stride, stride],
        pads=[before, before, after, after],
    )
    return _Tensor(y, x.c, out_h, out_w)


def _route(g: _Graph, layers: list[_Tensor], o: dict[str, str], i: int) -> _Tensor:
    groups, group_id = int(o.get("groups", 1)), int(o.get("group_id", 0))
    parts: list[_Tensor] = []
    for ref in (int(v) for v in o["layers"].split(",")):
        src = layers[ref if ref >= 0 else i + ref]
        if groups > 1:  # YOLOv4-tiny: take channel slice group_id of groups
            c = src.c // groups
            name = g.slice(src.name, group_id * c, (group_id + 1) * c, 1, f"l{i}")
            src = _Tensor(name, c, src.h, src.w)
        parts.append(src)
    if len({(p.h, p.w) for p in parts}) != 1:
        raise DarknetError(f"layer {i}: route inputs differ in size")
    if len(parts) == 1:
        return parts[0]
    name = g.op("Concat", [p.name for p in parts], f"l{i}", axis=1)
    return _Tensor(name, sum(p.c for p in parts), parts[0].h, parts[0].w)


def _upsample(g: _Graph, x: _Tensor, o: dict[str, str], i: int) -> _Tensor:
    stride = int(o.get("stride", 2))
    if stride < 1:
        raise DarknetError(f"layer {i}: downsampling [upsample] is not supported")
    scales = g.const(f"l{i}_scales", [1.0, 1.0, stride, stride])
    # asymmetric + floor is exactly darknet's pixel replication.
    y = g.op(
        "Resize",
        [x.name, "", scales],
        f"l{i}",
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    if float(o.get("scale", 1)) != 1.0:
        y = g.op("Mul", [y, g.const(f"l{i}_mul", float(o["scale"]))], f"l{i}")
    return _Tensor(y, x.c, x.h * stride, x.w * stride)


def _shortcut(g: _Graph, layers: list[_Tensor], o: dict[str, str], i: int) -> _Tensor:
    ref = int(o["from"])
    src, x = layers[ref if ref >= 0 else i + ref], layers[i - 1]
    if "weights_type" in o or (src.c, src.h, src.w) != (x.c, x.h, x.w):
        raise DarknetError(f"layer {i}: only a plain [shortcut] of equal shapes is supported")
    y = g.op("Add", [x.name, src.name], f"l{i}")
    y = _activation(g, y, o.get("activation", "linear"), f"l{i}")
    return _Tensor(y, x.c, x.h, x.w)


def _yolo(
    g: _Graph, x: _Tensor, o: dict[str, str], net: tuple[int, int], i: int
) -> tuple[str, int, int]:
    """Decode one [yolo] head to [N, h*w*anchors, 5 + classes]; returns (name, rows, classes)."""
    mask = [int(v) for v in o["mask"].split(",")]
    anchors = np.array([float(v) for v in o["anchors"].split(",")], np.float32).reshape(-1, 2)
    classes, scale = int(o.get("classes", 20)), float(o.get("scale_x_y", 1))
    if int(o.get("new_coords", 0)):
        raise DarknetError(f"layer {i}: [yolo] new_coords=1 is not supported")
    a, k, p = len(mask), 5 + classes, f"l{i}"
    if x.c != a * k:
        raise DarknetError(f"layer {i}: [yolo] expects {a * k} channels, gets {x.c}")
    rows = x.h * x.w * a
    y = g.op("Reshape", [x.name, g.const(f"{p}_s1", [0, a, k, x.h, x.w], np.int64)], p)
    y = g.op("Transpose", [y], p, perm=[0, 3, 4, 1, 2])  # -> N, gy, gx, anchor, k
    y = g.op("Reshape", [y, g.const(f"{p}_s2", [0, rows, k], np.int64)], p)
    gy, gx, _ = np.meshgrid(np.arange(x.h), np.arange(x.w), np.arange(a), indexing="ij")
    stride = np.array([net[0] / x.w, net[1] / x.h], np.float32)
    grid = (np.stack([gx, gy], -1).reshape(rows, 2) - (scale - 1) / 2) * stride
    sig = g.op("Sigmoid", [y], p)  # also over tw/th, which are not used from it: one op, not two
    # Darknet: cx = (sigmoid(tx) * scale_x_y - (scale_x_y - 1) / 2 + grid_x) * stride, here as
    # sigmoid(tx) * (scale_x_y * stride) + (grid_x - (scale_x_y - 1) / 2) * stride.
    xy = g.op("Mul", [g.slice(sig, 0, 2, 2, p), g.const(f"{p}_gain", scale * stride)], p)
    xy = g.op("Add", [xy, g.const(f"{p}_grid", grid)], p)
    wh = g.op("Exp", [g.slice(y, 2, 4, 2, p)], p)  # w = exp(tw) * anchor_w, in input pixels
    wh = g.op("Mul", [wh, g.const(f"{p}_anchors", np.tile(anchors[mask], (x.h * x.w, 1)))], p)
    return g.op("Concat", [xy, wh, g.slice(sig, 4, k, 2, p)], p, axis=2), rows, classes


def build_model(
    cfg: list[Section], weights: _Weights
) -> tuple[onnx.ModelProto, int, int, int, int]:
    """The ONNX model for a parsed cfg; returns (model, width, height, classes, boxes)."""
    net = cfg[0][1]
    width, height, channels = int(net["width"]), int(net["height"]), int(net.get("channels", 3))
    g = _Graph()
    layers: list[_Tensor] = []
    heads: list[str] = []
    classes: set[int] = set()
    boxes = 0
    x = _Tensor(INPUT_NAME, channels, height, width)
    for i, (kind, o) in enumerate(cfg[1:]):
        prev = layers[-1] if layers else x
        if kind in ("convolutional", "conv"):
            layers.append(_conv(g, prev, o, weights, i))
        elif kind in ("maxpool", "max"):
            layers.append(_maxpool(g, prev, o, i))
        elif kind == "route":
            layers.append(_route(g, layers, o, i))
        elif kind == "upsample":
            layers.append(_upsample(g, prev, o, i))
        elif kind == "shortcut":
            layers.append(_shortcut(g, layers, o, i))
        elif kind == "yolo":
            head, rows, n_classes = _yolo(g, prev, o, (width, height), i)
            heads.append(head)
            classes.add(n_classes)
            boxes += rows
            layers.append(prev)  # nothing in tiny models routes from a [yolo]; pass through
        else:
            raise DarknetError(f"layer {i}: [{kind}] is not supported")
    weights.finish()
    if not heads or len(classes) != 1:
        raise DarknetError("cfg needs [yolo] layers that agree on the number of classes")
    n_classes = classes.pop()
    g.nodes.append(helper.make_node("Concat", heads, [OUTPUT_NAME], axis=1))
    graph = helper.make_graph(
        g.nodes,
        "darknet_yolo",
        [_value_info(INPUT_NAME, ["batch", channels, height, width])],
        [_value_info(OUTPUT_NAME, ["batch", boxes, 5 + n_classes])],
        g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edge_inference"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model, width, height, n_classes, boxes


def _value_info(name: str, shape: list[str | int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def convert_darknet(cfg_path: Path, weights_path: Path, onnx_path: Path) -> ConvertedModel:
    """Convert cfg + weights to an ONNX file at onnx_path (see the module docstring)."""
    cfg = parse_cfg(cfg_path.read_text(encoding="utf-8"))
    model, width, height, classes, boxes = build_model(cfg, _Weights(weights_path))
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_name(onnx_path.name + ".tmp")
    onnx.save_model(model, str(tmp))
    tmp.replace(onnx_path)  # never leave a half-written model where a server would load it
    return ConvertedModel(onnx_path, width, height, classes, boxes)


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m inference_server.models.darknet CFG WEIGHTS OUT.onnx."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("cfg", type=Path)
    parser.add_argument("weights", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    try:
        result = convert_darknet(args.cfg, args.weights, args.output)
    except (DarknetError, OSError) as err:
        parser.exit(1, f"error: {err}\n")
    print(f"wrote {result.onnx_path}: {result.num_classes} classes, {result.num_boxes} boxes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
